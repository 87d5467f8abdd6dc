"""Items that wait for fleet-wide model capacity in the worker runtime (actors/runtime.py with
actors/slots.py and app/providers/limits.py), driven directly on a real Redis against the fake
OpenAI server: given back at the release time, and read as waiting only while they wait."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from actors.item_ends import ItemsWaiting
from app.model_limits import ModelLimit
from app.schemas.batches import LettaBatchRequest
from app.store import Store
from tests.fakes.model_servers import FakeOpenAIServer
from tests.support.runtime import openai_agent, run_in_runtime, worker_runtime

BUCKET = "openai/gpt-4o-mini"


def _one_item_batch(store: Store, model: FakeOpenAIServer) -> str:
    agent_id = openai_agent(store, model, context_window=8000)
    batch_id, _ = store.batches.create(requests=[LettaBatchRequest(agent_id=agent_id, input="hi")],
                                       callback_url=None, metadata=None, completion_window_s=3600)
    return batch_id


def _runtime(redis_url: str, tmp_path: Any, limit: dict[str, int], *, release_after_s: float) -> Any:
    return worker_runtime(redis_url, tmp_path, model_limits={BUCKET: limit}, model_wait_release_s=release_after_s)


def test_given_an_item_given_back_while_waiting_when_the_same_process_runs_it_at_once_then_it_no_longer_reads_waiting(
        store, redis_url, tmp_path):
    with FakeOpenAIServer(first_token_delay_s=1.0) as model:
        batch_id = _one_item_batch(store, model)
        runtime = _runtime(redis_url, tmp_path, {"max_streams": 1}, release_after_s=0.3)
        # Another process holds the model's only stream.
        assert store.model_limits.acquire(BUCKET, "elsewhere", limit=ModelLimit(max_streams=1), tokens=0,
                                          lease_s=30).admitted
        shown: list[Any] = []

        async def work() -> None:
            with pytest.raises(ItemsWaiting):
                await runtime.run_chunk(batch_id, 0, 0)
            shown.append(store.batches.items_page(batch_id, after=None, before=None, limit=1, order="asc")[0])
            store.model_limits.release(BUCKET, "elsewhere", tokens_used=None)
            again = asyncio.create_task(runtime.run_chunk(batch_id, 0, 0))  # the chunk's retry, in this process
            assert await asyncio.to_thread(model.wait_for_open_streams, 1, 10)
            shown.append(store.batches.items_page(batch_id, after=None, before=None, limit=1, order="asc")[0])
            await again

        run_in_runtime(runtime, work)

    given_back, streaming = shown
    assert given_back["waiting"] == "model_capacity"  # given back, still waiting
    assert streaming["status"] == "running"
    assert streaming["waiting"] is None  # its call is admitted and streams: it waits for nothing
    assert store.batches.get(batch_id)["request_counts"]["succeeded"] == 1


def test_given_a_model_paused_longer_than_the_release_time_when_an_item_waits_for_its_first_call_then_it_is_given_back_at_the_release_time(  # noqa: E501
        store, redis_url, tmp_path):
    with FakeOpenAIServer() as model:
        batch_id = _one_item_batch(store, model)
        runtime = _runtime(redis_url, tmp_path, {}, release_after_s=0.5)
        store.model_limits.pause(BUCKET, seconds=6)  # another process met a 429 with Retry-After: 6
        waited: list[float] = []

        async def work() -> None:
            started = time.monotonic()
            with pytest.raises(ItemsWaiting):
                await runtime.run_chunk(batch_id, 0, 0)
            waited.append(time.monotonic() - started)

        run_in_runtime(runtime, work)

    assert model.requests == []
    assert waited[0] < 3, f"the item held its worker thread {waited[0]:.1f} s, past the release time of 0.5 s"


def test_given_an_item_given_back_while_waiting_when_its_batch_is_cancelled_then_it_counts_as_cancelled_at_once(
        store, redis_url, tmp_path):
    """Not when the chunk's delayed retry comes: nothing runs the item meanwhile, so the batch's
    counts and its finalize (the callback) would wait BATCHLINE_MODEL_WAIT_RELEASE_S for nothing."""
    with FakeOpenAIServer() as model:
        batch_id = _one_item_batch(store, model)
        runtime = _runtime(redis_url, tmp_path, {"max_streams": 1}, release_after_s=0.3)
        assert store.model_limits.acquire(BUCKET, "elsewhere", limit=ModelLimit(max_streams=1), tokens=0,
                                          lease_s=30).admitted

        async def work() -> None:
            with pytest.raises(ItemsWaiting):
                await runtime.run_chunk(batch_id, 0, 0)

        run_in_runtime(runtime, work)
        given_back = store.batches.items_page(batch_id, after=None, before=None, limit=1, order="asc")[0]
        stopped = store.batches.stop(batch_id, status="cancelled")

        assert given_back["status"] == "pending"  # it has not started: no model call was made
        assert given_back["started_at"] is None
        assert given_back["waiting"] == "model_capacity"
        assert stopped.needs_finalize  # nothing left for a worker to end: the cancel sends finalize now
        counts = store.batches.get(batch_id)["request_counts"]
        assert counts["pending"] + counts["running"] == 0 and counts["cancelled"] == 1

        store.model_limits.release(BUCKET, "elsewhere", tokens_used=None)
        retry = worker_runtime(redis_url, tmp_path)
        run_in_runtime(retry, lambda: retry.run_chunk(batch_id, 0, 0))
    assert model.requests == []  # the chunk's retry settles it as cancelled, never calls the model
    assert store.batches.items_page(batch_id, after=None, before=None, limit=1, order="asc")[0]["status"] == \
        "cancelled"
    assert store.batches.get(batch_id)["request_counts"]["cancelled"] == 1
