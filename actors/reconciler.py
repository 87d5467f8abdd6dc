"""The reconciler: a periodic sweep that finishes whatever a lost Dramatiq message left undone, so
that every accepted request reaches a terminal state with no human action.

Dramatiq messages can be lost: a Redis restart or failover that drops the last writes, a queue
purged by hand, a message dead-lettered after its retries. Batchline's own state in Redis
(app/store/progress.py) says what each active batch still needs; for each, a sweep:

- expires it once its completion window has passed (Redis clock; no delayed message needed);
- resumes a fan-out that has fewer chunks in flight than its budget and items left to enqueue,
  when no start message is alive (the step that enqueues a finished chunk's successor was lost);
- re-enqueues every unfinished chunk whose message is gone (the claim's lease still guards
  against running an item whose owner is alive: such an item answers "busy");
- asks for finalize when every item has ended but the batch is not terminal;
- re-queues a callback neither delivered, nor in flight, nor out of attempts;
- retires the batch from the active index once nothing is left to do.

Every worker process runs the loop; a lease in Redis lets one sweep at a time.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

from app.outage import outage
from app.queues import Queues
from app.redis_retry import UNAVAILABLE
from app.store import Store
from app.store.progress import BatchProgress, Chunk
from app.tasks import FINALIZE_BATCH, RUN_CHUNK, SEND_CALLBACK, START_BATCH, TaskQueue
from app.vocabulary import BatchStatus

logger = logging.getLogger(__name__)


@dataclass
class Repairs:
    """What one sweep found and did, in counts."""

    batches_visited: int = 0
    batches_expired: int = 0
    fanouts_resumed: int = 0
    chunks_requeued: int = 0
    finalizes_requested: int = 0
    callbacks_requeued: int = 0
    batches_retired: int = 0

    def counts(self) -> dict[str, int]:
        return asdict(self)

    @property
    def repaired(self) -> int:
        return (self.batches_expired + self.fanouts_resumed + self.chunks_requeued + self.finalizes_requested
                + self.callbacks_requeued)


class Reconciler:
    def __init__(self, *, store: Store, tasks: TaskQueue, callback_max_attempts: int,
                 chunk_budget: Callable[[], int] = lambda: 1) -> None:
        self.store = store
        self.tasks = tasks
        self.callback_max_attempts = callback_max_attempts
        #: Chunks a batch may have in flight (actors/fanout.py); fewer means its fan-out stalled.
        self.chunk_budget = chunk_budget
        self._queues: Queues | None = None

    @property
    def queues(self) -> Queues:
        # Built on first use: a runtime that never sweeps (a test's) needs no broker client.
        if self._queues is None:
            self._queues = Queues(tasks=self.tasks)
        return self._queues

    def sweep(self) -> Repairs:
        repairs = Repairs()
        self._expire_due(repairs)
        batch_ids = self.store.progress.active_ids()
        for batch_id, progress in zip(batch_ids, self.store.progress.progress(batch_ids), strict=True):
            if progress is None:
                self.store.progress.retire(batch_id)  # the batch itself is gone
                continue
            repairs.batches_visited += 1
            self._repair(progress, repairs)
        return repairs

    def _expire_due(self, repairs: Repairs) -> None:
        for batch_id in self.store.progress.due_for_expiry():
            stopped = self.store.batches.stop(batch_id, status=BatchStatus.EXPIRED)
            self.store.progress.drop_deadline(batch_id)
            if stopped.result == "stopped":
                repairs.batches_expired += 1
                logger.info("Batch %s expired with %d requests still running", batch_id, stopped.running)
            if stopped.needs_finalize:
                self.tasks.send(FINALIZE_BATCH, batch_id)

    def _repair(self, progress: BatchProgress, repairs: Repairs) -> None:
        batch_id = progress.batch_id
        if progress.fanout_short(self.chunk_budget()) and not self._alive(START_BATCH, progress.start_message_id):
            self.tasks.send(START_BATCH, batch_id)
            repairs.fanouts_resumed += 1
        if progress.unfinished:
            dead = self._dead_chunks(progress.chunks)
            for chunk in dead:
                self.tasks.send(RUN_CHUNK, batch_id, chunk.start, chunk.stop)
            repairs.chunks_requeued += len(dead)
            return
        if progress.needs_finalize:
            self.tasks.send(FINALIZE_BATCH, batch_id)
            repairs.finalizes_requested += 1
            return
        if self._callback_outstanding(progress):
            if not self._alive(SEND_CALLBACK, progress.callback_message_id):
                self.tasks.send(SEND_CALLBACK, batch_id)
                repairs.callbacks_requeued += 1
            return
        self.store.blobs.drop_requests(batch_id)  # in case the finalize that dropped them died first
        self.store.progress.retire(batch_id)
        repairs.batches_retired += 1

    def _callback_outstanding(self, progress: BatchProgress) -> bool:
        return bool(progress.callback_url) and not progress.callback_delivered \
            and progress.callback_attempts < self.callback_max_attempts

    def _dead_chunks(self, chunks: list[Chunk]) -> list[Chunk]:
        alive = self.queues.alive(RUN_CHUNK, [chunk.message_id for chunk in chunks])
        return [chunk for chunk, is_alive in zip(chunks, alive, strict=True) if not is_alive]

    def _alive(self, actor_name: str, message_id: str | None) -> bool:
        return message_id is not None and self.queues.alive(actor_name, [message_id])[0]


async def sweep_periodically(reconciler: Reconciler, *, owner: str, interval_s: float) -> None:
    """Every worker process's loop: about every `interval_s`, sweep if this process wins the lease."""
    store = reconciler.store
    while True:
        # Spread the processes' attempts, so one is not always the one that sweeps.
        await asyncio.sleep(interval_s * random.uniform(0.5, 1.0))
        try:
            if store.sweeps.try_lease(owner=owner, ttl_s=interval_s * 0.9):
                await asyncio.to_thread(sweep_and_record, reconciler, owner=owner)
        except UNAVAILABLE as exc:
            outage.lost(exc)
        except Exception:
            logger.exception("The reconciler's sweep failed; the next one tries again")


def sweep_and_record(reconciler: Reconciler, *, owner: str) -> Repairs:
    """One sweep, its time and repairs kept in Redis (the monitor shows them), one line if it repaired."""
    started = time.monotonic()
    repairs = reconciler.sweep()
    seconds, micros = reconciler.store.client_time()
    reconciler.store.sweeps.record(owner=owner, finished_us=seconds * 1_000_000 + micros,
                                   duration_ms=(time.monotonic() - started) * 1000, repairs=repairs.counts())
    if repairs.repaired:
        logger.info("Sweep repaired: %s", ", ".join(
            f"{count} {name.replace('_', ' ')}" for name, count in repairs.counts().items()
            if count and name not in ("batches_visited", "batches_retired")))
    return repairs
