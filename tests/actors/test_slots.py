"""An item that waits for fleet-wide model capacity lends its worker stream slot back and is marked
as waiting (actors/slots.py with app/providers/limits.py), on a real Redis and fake OpenAI server."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from actors.slots import StreamSlot
from app.model_limits import LimitTable, ModelLimit
from app.providers.base import ChatMessage, ModelRequest
from app.providers.limits import ModelLimiter
from app.providers.openai import OpenAIProvider
from app.store import Store, connect, keys
from tests.fakes.model_servers import FakeOpenAIServer

HELLO = ModelRequest(model="gpt-4o-mini", system="", messages=(ChatMessage(role="user", text="Hi"),))
LIMIT = ModelLimit(max_streams=1)
BUCKET = "openai/gpt-4o-mini"
ITEM = "batch_item-1"


@pytest.fixture
def store(redis_url: str) -> Store:
    return Store(client=connect(redis_url))


async def _until(predicate, timeout_s: float = 5.0) -> None:
    async with asyncio.timeout(timeout_s):
        while not predicate():
            await asyncio.sleep(0.01)


def _run(store: Store, server: FakeOpenAIServer, scenario) -> None:
    async def go() -> None:
        streams = asyncio.Semaphore(1)  # this process's worker_max_streams
        limiter = ModelLimiter(table=LimitTable({"openai/*": LIMIT}), store=store.model_limits, lease_s=30,
                               pause_max_s=60)
        async with httpx.AsyncClient(timeout=10) as http:
            provider = limiter.wrap(OpenAIProvider(client=http, base_url=server.base_url, api_key="sk-x"),
                                    provider_name="openai", base_url=server.base_url)

            async def item() -> str:
                async with StreamSlot(streams=streams, limits=store.model_limits, item_id=ITEM, owner="me"):
                    return (await provider.stream(HELLO, on_first_token=lambda: None)).text

            await scenario(streams, asyncio.create_task(item()))

    # Another process holds the model's only stream.
    assert store.model_limits.acquire(BUCKET, "elsewhere", limit=LIMIT, tokens=0, lease_s=30).admitted
    asyncio.run(go())


def _waiting(store: Store) -> str | None:
    return store.client.hget(keys.item(ITEM), "waiting")


def test_given_the_models_streams_all_taken_when_an_item_waits_then_its_slot_is_free_and_it_is_marked_waiting(store):
    with FakeOpenAIServer(reply=None) as server:
        async def scenario(streams: asyncio.Semaphore, item: asyncio.Task) -> None:
            await _until(lambda: _waiting(store) == "model_capacity me")
            assert not streams.locked()  # another item of this process could stream meanwhile
            assert server.requests == []
            store.model_limits.release(BUCKET, "elsewhere", tokens_used=None)
            assert await asyncio.wait_for(item, 10) == "Hello from the fake model."
            assert _waiting(store) is None
            assert streams._value == 1  # the item took its slot back and returned it once

        _run(store, server, scenario)
    assert store.client.zcard(keys.model_limit(BUCKET, "streams")) == 0  # its own lease is given back


def test_given_a_waiting_item_when_it_is_cancelled_then_the_slot_count_stays_right_and_nothing_is_held(store):
    with FakeOpenAIServer() as server:
        async def scenario(streams: asyncio.Semaphore, item: asyncio.Task) -> None:
            await _until(lambda: _waiting(store) is not None)
            item.cancel()
            with pytest.raises(asyncio.CancelledError):
                await item
            assert streams._value == 1
            assert _waiting(store) is None

        _run(store, server, scenario)
    assert server.requests == []
    assert store.client.zrange(keys.model_limit(BUCKET, "streams"), 0, -1) == ["elsewhere"]
