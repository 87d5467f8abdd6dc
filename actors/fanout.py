"""Lazy fan-out: a batch keeps at most a budget of chunk messages in flight, and each chunk that
finishes enqueues the batch's next one. Every running batch therefore has about the same number
of chunks in the queue, which serves them in turn (round-robin), and the queue's depth is work
ready to run rather than a whole 100,000-request batch.

The budget is `BATCHLINE_CHUNKS_IN_FLIGHT_PER_BATCH`, or by default the worker threads of the
fleet (one chunk occupies one thread until its slowest item ends), so a batch running alone still
keeps every thread busy. Taking chunks is atomic (app/lua/claim_chunks.lua); a step lost in
between (a message, or a process that died before sending) is repaired by the reconciler.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from app.store import Store
from app.tasks import RUN_CHUNK, TaskQueue

#: How long a derived budget (from the workers' heartbeats) is reused before it is read again.
BUDGET_CACHE_S = 5.0


class ChunkFeeder:
    def __init__(self, *, store: Store, tasks: TaskQueue, chunk_size: int, chunks_in_flight_per_batch: int,
                 own_threads: Callable[[], int]) -> None:
        self.store = store
        self.tasks = tasks
        self.chunk_size = chunk_size
        self.fixed_budget = chunks_in_flight_per_batch
        self.own_threads = own_threads
        self._derived: tuple[float, int] | None = None

    def budget(self) -> int:
        """Chunks one batch may have in flight."""
        if self.fixed_budget:
            return self.fixed_budget
        now = time.monotonic()
        if self._derived is None or now - self._derived[0] > BUDGET_CACHE_S:
            fleet = sum(int(worker.get("threads") or 0) for worker in self.store.monitor.workers())
            # This process's own threads count even before its first heartbeat is written.
            self._derived = (now, max(fleet, self.own_threads(), 1))
        return self._derived[1]

    def feed(self, batch_id: str, *, finished_start: int | None = None) -> int:
        """Enqueue the batch's next chunks up to its budget (after taking the chunk that starts at
        `finished_start` out of flight); returns how many were enqueued."""
        chunks = self.store.progress.claim_chunks(batch_id, budget=self.budget(), chunk_size=self.chunk_size,
                                                  finished_start=finished_start)
        for start, stop in chunks:
            self.tasks.send(RUN_CHUNK, batch_id, start, stop)
        return len(chunks)
