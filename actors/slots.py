"""An item's place among its worker process's streams (`BATCHLINE_WORKER_MAX_STREAMS`), lent
back while the item waits for fleet-wide model capacity (app/providers/limits.py), so that items
waiting for one model do not keep this process from running others. While it waits, the item is
marked in Redis and `GET .../requests` shows it as waiting. One that waits longer than
`BATCHLINE_MODEL_WAIT_RELEASE_S` before its first model call is given back, so that its chunk's
worker thread is freed (actors/runtime.py retries the chunk later)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextvars import Token
from typing import Any

import redis

from app.providers.limits import WAIT_HOOKS, CapacityRelease, Waiting
from app.store.model_limits import ModelLimitStore
from app.vocabulary import WaitingFor


class StreamSlot:
    """`async with StreamSlot(...)`: holds one of the process's stream slots for an item, and is
    the item's wait hooks (`WAIT_HOOKS`) meanwhile."""

    def __init__(self, *, streams: asyncio.Semaphore, limits: ModelLimitStore, item_id: str, owner: str,
                 release_after_s: float = 0.0) -> None:
        self._streams = streams
        self._limits = limits
        self._item_id = item_id
        self._owner = owner
        self._release_after_s = release_after_s
        self._called = False
        self._held = False
        self._token: Token[Waiting | None] | None = None

    async def __aenter__(self) -> StreamSlot:
        await self._streams.acquire()
        self._held = True
        self._token = WAIT_HOOKS.set(self)
        return self

    async def __aexit__(self, *exc: Any) -> None:
        if self._token is not None:
            WAIT_HOOKS.reset(self._token)
        if self._held:
            self._held = False
            self._streams.release()

    @contextlib.asynccontextmanager
    async def waiting(self) -> AsyncIterator[None]:
        self._held = False
        self._streams.release()
        self._mark(waiting=True)
        try:
            yield
        except CapacityRelease:
            raise  # given back still waiting: the mark stays until another run takes the item
        except BaseException:
            # Cancelled (a stop, a shutdown) while waiting: the item ends without taking a slot again.
            self._mark(waiting=False)
            raise
        self._mark(waiting=False)
        await self._streams.acquire()
        self._held = True

    def give_up(self, waited_s: float) -> bool:
        return self.give_up_in(waited_s) == 0.0

    def give_up_in(self, waited_s: float) -> float | None:
        """Only before the item's first model call: a later one would throw its progress away."""
        if self._release_after_s <= 0 or self._called:
            return None
        return max(0.0, self._release_after_s - waited_s)

    def admitted(self) -> None:
        self._called = True

    def _mark(self, *, waiting: bool) -> None:
        with contextlib.suppress(redis.RedisError):  # only a display: the wait goes on without it
            if waiting:
                self._limits.mark_waiting(self._item_id, reason=WaitingFor.MODEL_CAPACITY, owner=self._owner)
            else:
                self._limits.clear_waiting(self._item_id)
