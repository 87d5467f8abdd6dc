"""A worker process's memory budget: items reserve what they are about to hold before they load
it, and a process close to its budget starts no new item until running ones end.

Without it, a chunk-per-thread worker admits up to `worker_max_streams` items at once whatever
their size, and a few large requests multiplied by a thousand items take the machine down (the
kernel's OOM killer, then the same again on every redelivery). One item always runs, however large,
so nothing waits forever.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import AsyncIterator, Callable

logger = logging.getLogger(__name__)

#: Bytes reserved for an item on top of what its request and history take (parsed objects,
#: the provider's request body, buffers).
ITEM_OVERHEAD_BYTES = 256 * 1024
#: How often a waiting item checks again.
WAIT_POLL_S = 0.05
_PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")


def resident_bytes() -> int:
    """This process's resident set size, from /proc (cheap enough to read per item)."""
    with open("/proc/self/statm", "rb") as statm:
        return int(statm.read().split()[1]) * _PAGE_SIZE


class MemoryBudget:
    """Admission control for the items of one worker process (used from its event loop only)."""

    def __init__(self, *, budget_bytes: int, rss: Callable[[], int] = resident_bytes) -> None:
        self.budget_bytes = budget_bytes
        self.rss = rss
        #: What the process holds before any item: reservations come on top of it.
        self.baseline_bytes = rss()
        self.reserved = 0
        self.holders = 0
        self._waiting_logged = False

    @contextlib.asynccontextmanager
    async def reserve(self, nbytes: int) -> AsyncIterator[None]:
        nbytes += ITEM_OVERHEAD_BYTES
        while self.holders and not self._has_room(nbytes):
            if not self._waiting_logged:
                self._waiting_logged = True
                logger.warning("Worker memory near its budget (%d MB resident, %d MB reserved of %d MB): new "
                               "items wait for running ones to end", self.rss() >> 20, self.reserved >> 20,
                               self.budget_bytes >> 20)
            await asyncio.sleep(WAIT_POLL_S)
        self.reserved += nbytes
        self.holders += 1
        try:
            yield
        finally:
            self.reserved -= nbytes
            self.holders -= 1
            if not self.holders:
                self._waiting_logged = False

    def _has_room(self, nbytes: int) -> bool:
        # Reservations cover what admitted items are about to allocate; resident memory covers
        # what they (and everything else) already hold.
        return max(self.baseline_bytes + self.reserved, self.rss()) + nbytes <= self.budget_bytes
