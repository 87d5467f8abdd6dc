"""Wait for the Dramatiq queues in Redis to drain, so a test can assert that something did NOT
happen (no second callback, no extra attempt) once nothing is left that could make it happen.

Dramatiq's Redis broker (`dramatiq/brokers/redis/dispatch.lua`) keeps every message's data in
the hash `dramatiq:<queue>.msgs` from enqueue until its ack; the ready list `dramatiq:<queue>`,
the delay queue `dramatiq:<queue>.DQ` (with its own `.msgs`) and the per-worker in-flight sets
`dramatiq:__acks__.<worker_id>.<queue>` only hold ids of those messages. A message that fails
for good moves to `dramatiq:<queue>.XQ`, the dead letters, which nothing runs again. A follow-up
message (a retry, a due delayed message, the next pipeline step) is enqueued before the message
that caused it is acked, so "no message left outside the dead letters" is a stable idle state.
"""

from __future__ import annotations

import json
import time

import redis

#: Dramatiq's default key namespace (the broker in `actors/broker.py` keeps it).
NAMESPACE = "dramatiq"


def pending_messages(redis_url: str, *, ignore_actors: tuple[str, ...] = ()) -> list[str]:
    """`<queue>:<actor>` of every message not yet acked (ready, delayed or in flight)."""
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    found = []
    for key in client.scan_iter(match=f"{NAMESPACE}:*.msgs"):
        queue = key.removeprefix(f"{NAMESPACE}:").removesuffix(".msgs")
        if queue.endswith(".XQ"):
            continue
        for data in client.hvals(key):
            actor = json.loads(data)["actor_name"]
            if actor not in ignore_actors:
                found.append(f"{queue}:{actor}")
    return found


def wait_for_idle_queues(redis_url: str, *, timeout_s: float = 30.0, ignore_actors: tuple[str, ...] = ()) -> None:
    """Return once no message is waiting, delayed or in flight."""
    deadline = time.monotonic() + timeout_s
    while left := pending_messages(redis_url, ignore_actors=ignore_actors):
        if time.monotonic() > deadline:
            raise TimeoutError(f"Dramatiq queues not idle after {timeout_s} s: {sorted(left)}")
        time.sleep(0.05)
