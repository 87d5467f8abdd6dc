"""Each worker process says it is alive, and what it holds, every few seconds (GET /v1/monitor
lists the workers whose heartbeat has not expired)."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import Callable

import redis

from app.store import Store

logger = logging.getLogger(__name__)

#: How often a worker process writes its heartbeat.
HEARTBEAT_INTERVAL_S = 2.0
#: How long a heartbeat counts: a worker silent this long is no longer listed.
HEARTBEAT_TTL_S = 10.0


async def send_heartbeats(*, store: Store, owner: str, threads: Callable[[], int], items_in_flight: Callable[[], int],
                          streams_open: Callable[[], int]) -> None:
    host, pid = socket.gethostname(), os.getpid()
    while True:
        try:
            await asyncio.to_thread(store.monitor.heartbeat, owner, ttl_s=HEARTBEAT_TTL_S, host=host, pid=pid,
                                    threads=threads(), items_in_flight=items_in_flight(),
                                    streams_open=streams_open())
        except redis.RedisError as exc:  # Redis is away: the outage is reported elsewhere
            logger.debug("Heartbeat not written: %s", type(exc).__name__)
        await asyncio.sleep(HEARTBEAT_INTERVAL_S)


def forget(store: Store, owner: str) -> None:
    """A worker that stops cleanly leaves the list at once."""
    try:
        store.monitor.forget_worker(owner)
    except redis.RedisError as exc:
        logger.debug("Heartbeat not removed: %s", type(exc).__name__)
