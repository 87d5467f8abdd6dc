"""What the Dramatiq queues hold, and the dead letters: listed, requeued or discarded.

This is the one module that reads Dramatiq's Redis broker layout
(dramatiq/brokers/redis/dispatch.lua): `<ns>:<queue>` is the ready list (its head the oldest message),
`<ns>:<queue>.msgs` holds every message from enqueue to ack (ready ones and those a worker
fetched), `<ns>:<queue>.DQ.msgs` the delayed ones (retries waiting out their backoff), and
`<ns>:<queue>.XQ` (a sorted set by failure time, in ms) with `<ns>:<queue>.XQ.msgs` the dead
letters, which nothing runs again.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

import dramatiq
from dramatiq.common import dq_name, xq_name

from app.tasks import BATCHES_QUEUE, CALLBACKS_QUEUE, ITEMS_QUEUE, QUEUE_OF, TaskQueue

QUEUES = (BATCHES_QUEUE, ITEMS_QUEUE, CALLBACKS_QUEUE)
#: Most dead letters one listing returns.
DEAD_LETTERS_MAX = 1000


@dataclass(frozen=True)
class QueueStats:
    name: str
    ready: int
    delayed: int
    #: Fetched by a worker and not yet acked (including those it prefetched).
    in_flight: int
    dead: int
    #: How long the oldest ready message has waited, in seconds; None when none waits.
    latency_s: float | None


class Queues:
    def __init__(self, *, tasks: TaskQueue) -> None:
        self.tasks = tasks
        self.client = tasks.broker.client
        self.namespace = tasks.broker.namespace

    def _key(self, queue: str) -> str:
        return f"{self.namespace}:{queue}"

    def alive(self, actor_name: str, message_ids: list[str]) -> list[bool]:
        """Whether each message (by the id TaskQueue.send returned) still exists: waiting, delayed
        for a retry, or being processed. One acked, dead-lettered, purged or lost with a Redis
        failover is not alive."""
        if not message_ids:
            return []
        key = self._key(QUEUE_OF[actor_name])
        with self.client.pipeline(transaction=False) as pipe:
            for message_id in message_ids:
                pipe.hexists(f"{key}.msgs", message_id)
                pipe.hexists(f"{dq_name(key)}.msgs", message_id)
            replies = pipe.execute()
        return [bool(ready or delayed) for ready, delayed in zip(replies[::2], replies[1::2], strict=True)]

    def stats(self) -> list[QueueStats]:
        with self.client.pipeline(transaction=True) as pipe:
            for queue in QUEUES:
                key = self._key(queue)
                pipe.llen(key)
                pipe.hlen(f"{key}.msgs")
                pipe.hlen(f"{dq_name(key)}.msgs")
                pipe.zcard(xq_name(key))
                pipe.lindex(key, 0)
            replies = pipe.execute()
        heads = [replies[i + 4] for i in range(0, len(replies), 5)]
        with self.client.pipeline(transaction=False) as pipe:
            for queue, head in zip(QUEUES, heads, strict=True):
                pipe.hget(f"{self._key(queue)}.msgs", head or "")
            bodies = pipe.execute()
        now_ms = time.time() * 1000
        stats = []
        for n, queue in enumerate(QUEUES):
            ready, held, delayed, dead, _ = replies[n * 5:n * 5 + 5]
            stats.append(QueueStats(name=queue, ready=ready, delayed=delayed, in_flight=max(0, held - ready),
                                    dead=dead, latency_s=_latency_s(bodies[n], now_ms) if ready else None))
        return stats

    def dead_letters(self, *, queue: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
        """The dead letters, most recent failure first."""
        found = []
        for name in (queue,) if queue else QUEUES:
            key = xq_name(self._key(name))
            entries = self.client.zrevrange(key, 0, limit - 1, withscores=True)
            bodies = self.client.hmget(f"{key}.msgs", [message_id for message_id, _ in entries]) if entries else []
            for (message_id, failed_ms), body in zip(entries, bodies, strict=True):
                found.append(_dead_letter(_text(message_id), name, failed_ms, body))
        found.sort(key=lambda letter: letter["failed_ms"], reverse=True)
        return found[:limit]

    def dead_letter(self, message_id: str) -> dict[str, Any] | None:
        """One dead letter by its id, whichever queue holds it; None when none does."""
        for name in QUEUES:
            key = xq_name(self._key(name))
            with self.client.pipeline(transaction=False) as pipe:
                pipe.zscore(key, message_id)
                pipe.hget(f"{key}.msgs", message_id)
                failed_ms, body = pipe.execute()
            if failed_ms is not None:
                return _dead_letter(message_id, name, failed_ms, body)
        return None

    def requeue(self, message_id: str | None = None, *, queue: str | None = None) -> list[str]:
        """Send each dead letter (one, or all of a queue or of every queue) again as a new
        message, enqueued through the app's broker so that its middleware records it; returns
        the dead letters' ids."""
        done = []
        for name, taken_id, body in self._take(message_id, queue):
            done.append(taken_id)
            if body is None:
                continue  # its data was already gone (Dramatiq's expiry): nothing to send
            message = json.loads(body)
            self.tasks.broker.enqueue(dramatiq.Message(
                queue_name=name, actor_name=message["actor_name"], args=tuple(message.get("args") or ()),
                kwargs=message.get("kwargs") or {}, options={}))
        return done

    def discard(self, message_id: str | None = None, *, queue: str | None = None) -> list[str]:
        """Delete dead letters (one, or all of a queue or of every queue); returns their ids."""
        return [taken_id for _, taken_id, _ in self._take(message_id, queue)]

    def _take(self, message_id: str | None, queue: str | None) -> list[tuple[str, str, bytes | None]]:
        """Remove dead letters and return (queue, id, message data) of each this call removed:
        of concurrent callers, only one gets a given letter."""
        taken = []
        for name in (queue,) if queue else QUEUES:
            key = xq_name(self._key(name))
            ids = [message_id] if message_id else [_text(one) for one in self.client.zrange(key, 0, -1)]
            for one in ids:
                with self.client.pipeline(transaction=True) as pipe:
                    pipe.hget(f"{key}.msgs", one)
                    pipe.zrem(key, one)
                    pipe.hdel(f"{key}.msgs", one)
                    body, removed, _ = pipe.execute()
                if removed:
                    taken.append((name, one, body))
        return taken


def _text(value: str | bytes) -> str:
    # The broker's client does not decode replies.
    return value.decode() if isinstance(value, bytes) else value


def _latency_s(body: bytes | None, now_ms: float) -> float | None:
    """Since when the message has been ready: its creation, or the end of its retry delay."""
    if body is None:
        return None
    message = json.loads(body)
    ready_ms = max(message.get("message_timestamp") or 0, (message.get("options") or {}).get("eta") or 0)
    return round(max(0.0, now_ms - ready_ms) / 1000, 3)


def _dead_letter(message_id: str, queue: str, failed_ms: float, body: bytes | None) -> dict[str, Any]:
    message = json.loads(body) if body else {}
    options = message.get("options") or {}
    args = list(message.get("args") or [])
    return {
        "id": message_id,
        "queue": queue,
        "actor": message.get("actor_name"),
        "args": args,
        "failed_ms": failed_ms,
        "retries": int(options.get("retries") or 0),
        "batch_id": args[0] if args and isinstance(args[0], str) and args[0].startswith("job-") else None,
        "error": _exception_type(options.get("traceback")),
    }


def _exception_type(traceback: Any) -> str | None:
    """Only the exception's type from a stored traceback: its message or frames could quote
    secrets (a request body, a header)."""
    if not isinstance(traceback, str) or not traceback.strip():
        return None
    last = traceback.strip().splitlines()[-1]
    return last.split(":", 1)[0].strip()[:200] or None
