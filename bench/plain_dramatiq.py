"""Baselines, not used by Batchline. For bench/concurrency.py: one Dramatiq message per request,
streamed either by a plain sync actor on its worker thread, or by an async actor on Dramatiq's
event loop (which still holds a worker thread for its whole run). For `python -m bench`: a no-op
actor, Dramatiq's own ceiling on the same Redis."""

from __future__ import annotations

import os

import aiohttp
import dramatiq
import httpx
from dramatiq.brokers.redis import RedisBroker
from dramatiq.middleware import AsyncIO

broker = RedisBroker(url=os.environ["REDIS_URL"])
broker.add_middleware(AsyncIO())
dramatiq.set_broker(broker)
_client = httpx.Client(timeout=60)
_session: aiohttp.ClientSession | None = None
_BODY = {"model": "m", "stream": True, "messages": [{"role": "user", "content": "hi"}]}


@dramatiq.actor(queue_name="plain", max_retries=0)
def stream_one(endpoint: str, done_key: str) -> None:
    with _client.stream("POST", f"{endpoint}/chat/completions", json=_BODY) as response:
        for _ in response.iter_lines():
            pass
    broker.client.incr(done_key)


@dramatiq.actor(queue_name="plain", max_retries=0)
async def stream_one_async(endpoint: str, done_key: str) -> None:
    # The client Batchline streams with (aiohttp, no pool cap), so that only the design differs.
    global _session
    if _session is None:
        _session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0),
                                         timeout=aiohttp.ClientTimeout(total=60))
    async with _session.post(f"{endpoint}/chat/completions", json=_BODY) as response:
        async for _ in response.content.iter_any():
            pass
    broker.client.incr(done_key)


@dramatiq.actor(queue_name="plain", max_retries=0)
def noop() -> None:
    """The raw ceiling: what Dramatiq alone costs per message (fetch, run, ack) on this Redis."""
