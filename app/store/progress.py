"""Where each batch's pipeline stands, kept in Redis so that no Dramatiq message has to survive
for a batch to finish: the fan-out position, the ledger of chunks not yet finished (with the id of
the message that carries each), the index of batches that may still need work, and the index of
completion-window deadlines. A batch keeps at most a budget of chunks in flight; each chunk that
finishes takes the next (`claim_chunks`), so running batches share the queue. The reconciler
(actors/reconciler.py) reads it to repair what a lost message left undone."""

from __future__ import annotations

from dataclasses import dataclass, field

import redis

from app.store import keys
from app.store.scripts import Scripts
from app.vocabulary import TERMINAL_BATCH_STATUSES


@dataclass(frozen=True)
class Chunk:
    start: int
    stop: int
    message_id: str


@dataclass(frozen=True)
class BatchProgress:
    """What a sweep needs to know of one batch."""

    batch_id: str
    status: str
    total: int
    fanout_next: int
    pending: int
    running: int
    created_us: int
    start_message_id: str | None
    callback_url: str | None
    callback_queued: bool
    callback_delivered: bool
    callback_attempts: int
    callback_message_id: str | None
    chunks: list[Chunk] = field(default_factory=list)

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL_BATCH_STATUSES

    def fanout_short(self, budget: int) -> bool:
        """Items are left to enqueue and fewer than `budget` chunks are in flight: the step that
        enqueues the next chunk was lost (or the budget grew)."""
        return not self.terminal and self.fanout_next < self.total and len(self.chunks) < budget

    @property
    def unfinished(self) -> int:
        return self.pending + self.running

    @property
    def needs_finalize(self) -> bool:
        return finalize_due(self.status, unfinished=self.unfinished, callback_url=self.callback_url,
                            callback_queued=self.callback_queued)


def finalize_due(status: str, *, unfinished: int, callback_url: str | None, callback_queued: bool) -> bool:
    """Every item ended, but the batch is not terminal yet or its callback was never queued
    (the commit that ended the last item may have died before it could ask)."""
    if unfinished > 0:
        return False
    return status not in TERMINAL_BATCH_STATUSES or bool(callback_url and not callback_queued)


_FIELDS = ["status", "total", "fanout_next", "pending", "running", "created_us", "start_message_id",
           "callback_url", "callback_queued", "callback_delivered", "callback_attempts", "callback_message_id"]


class ProgressStore:
    def __init__(self, *, client: redis.Redis, scripts: Scripts) -> None:
        self.client = client
        self.scripts = scripts

    # -- fan-out and chunks ------------------------------------------------------------------

    def record_start(self, batch_id: str, *, message_id: str) -> None:
        """The message that carries the batch's fan-out (the sweep checks it is still alive)."""
        self.client.hset(keys.batch(batch_id), "start_message_id", message_id)

    def record_chunk(self, chunk: Chunk, *, batch_id: str) -> None:
        """A chunk's items are now carried by `chunk.message_id`, if the chunk is still in flight:
        `claim_chunks` alone puts a chunk in the ledger, and one that finished before its message
        was recorded stays out (record_chunk.lua)."""
        self.scripts.record_chunk(keys=[keys.batch_chunks(batch_id)], args=[chunk.start,
                                                                            f"{chunk.stop}:{chunk.message_id}"])

    def claim_chunks(self, batch_id: str, *, budget: int, chunk_size: int,
                     finished_start: int | None = None) -> list[tuple[int, int]]:
        """The next chunks (first, last position) the batch may have in flight within `budget`,
        now in its ledger with no message id yet; `finished_start` first removes the chunk
        starting there, whose items all ended. Atomic (claim_chunks.lua): callers racing, or a
        chunk finished twice, never take more than the budget."""
        flat = self.scripts.claim_chunks(keys=[keys.batch(batch_id), keys.batch_chunks(batch_id)],
                                         args=[budget, chunk_size, "" if finished_start is None else finished_start])
        return [(int(start), int(stop)) for start, stop in zip(flat[::2], flat[1::2], strict=True)]

    def needs_finalize(self, batch_id: str) -> bool:
        """See `finalize_due`; False for a batch that is gone."""
        status, pending, running, callback_url, queued = self.client.hmget(
            keys.batch(batch_id), ["status", "pending", "running", "callback_url", "callback_queued"])
        return status is not None and finalize_due(status, unfinished=int(pending or 0) + int(running or 0),
                                                   callback_url=callback_url, callback_queued=bool(queued))

    # -- what the sweep visits ---------------------------------------------------------------

    def active_ids(self) -> list[str]:
        return self.client.zrange(keys.ACTIVE_BATCHES, 0, -1)

    def progress(self, batch_ids: list[str]) -> list[BatchProgress | None]:
        """The progress of each batch, in two pipelined round trips whatever the count."""
        with self.client.pipeline(transaction=False) as pipe:
            for batch_id in batch_ids:
                pipe.hmget(keys.batch(batch_id), _FIELDS)
                pipe.hgetall(keys.batch_chunks(batch_id))
            replies = pipe.execute()
        return [_progress(batch_id, fields, chunks)
                for batch_id, fields, chunks in zip(batch_ids, replies[::2], replies[1::2], strict=True)]

    def due_for_expiry(self) -> list[str]:
        """Running batches whose completion window has passed, on the Redis server's clock."""
        return self.scripts.due_deadlines(keys=[keys.DEADLINES])

    def retire(self, batch_id: str) -> None:
        """The batch needs nothing more: no sweep visits it again."""
        with self.client.pipeline(transaction=True) as pipe:
            pipe.zrem(keys.ACTIVE_BATCHES, batch_id)
            pipe.zrem(keys.DEADLINES, batch_id)
            pipe.delete(keys.batch_chunks(batch_id))
            pipe.execute()

    def drop_deadline(self, batch_id: str) -> None:
        self.client.zrem(keys.DEADLINES, batch_id)


def _progress(batch_id: str, fields: list[str | None], chunks: dict[str, str]) -> BatchProgress | None:
    (status, total, fanout_next, pending, running, created_us, start_message_id, callback_url, queued, delivered,
     attempts, callback_message_id) = fields
    if status is None:
        return None
    ledger = []
    for start, value in chunks.items():
        stop, _, message_id = value.partition(":")
        ledger.append(Chunk(start=int(start), stop=int(stop), message_id=message_id))
    return BatchProgress(
        batch_id=batch_id, status=status, total=int(total or 0), fanout_next=int(fanout_next or 0),
        pending=int(pending or 0), running=int(running or 0), created_us=int(created_us or 0),
        start_message_id=start_message_id or None, callback_url=callback_url or None,
        callback_queued=bool(queued), callback_delivered=delivered == "1", callback_attempts=int(attempts or 0),
        callback_message_id=callback_message_id or None, chunks=sorted(ledger, key=lambda chunk: chunk.start))
