"""How a worker hears that a batch was stopped (cancelled or expired): Redis pub/sub, at once,
and a poll of the statuses of the batches it runs, for a message missed while reconnecting."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable

import redis

from app.outage import outage
from app.store import Store
from app.vocabulary import STOPPED_BATCH_STATUSES

logger = logging.getLogger(__name__)

#: Wait before resubscribing after Redis went away.
RECONNECT_DELAY_S = 1.0


class StopListener:
    """Calls `on_stop(batch_id)` on the event loop for every stopped batch this process runs."""

    def __init__(self, *, store: Store, loop: asyncio.AbstractEventLoop, on_stop: Callable[[str], None],
                 running_batches: Callable[[], set[str]], poll_s: float) -> None:
        self.store = store
        self.loop = loop
        self.on_stop = on_stop
        self.running_batches = running_batches
        self.poll_s = poll_s
        self.closed = False

    def start(self) -> asyncio.Task:
        threading.Thread(target=self._listen, name="batchline-stop-listener", daemon=True).start()
        return asyncio.create_task(self._poll())

    def close(self) -> None:
        self.closed = True

    def _listen(self) -> None:
        while not self.closed:
            try:
                pubsub = self.store.batches.stop_listener()
                while not self.closed:
                    message = pubsub.get_message(timeout=1.0)
                    if message and message["type"] == "message":
                        self.loop.call_soon_threadsafe(self.on_stop, message["data"])
                pubsub.close()
            except (redis.RedisError, OSError) as exc:
                outage.lost(exc)  # the poll covers what pub/sub misses meanwhile
                time.sleep(RECONNECT_DELAY_S)
            except RuntimeError:  # the event loop closed under us: the runtime is gone
                return

    async def _poll(self) -> None:
        while True:
            await asyncio.sleep(self.poll_s)
            batch_ids = sorted(self.running_batches())
            if not batch_ids:
                continue
            try:
                statuses = self.store.batches.statuses(batch_ids)
            except redis.RedisError:
                continue
            for batch_id, status in zip(batch_ids, statuses, strict=True):
                if status in STOPPED_BATCH_STATUSES:
                    self.on_stop(batch_id)
