"""The worker runtime on a real Redis, driven directly (no Dramatiq): redelivered chunks finish
what dead or failed owners left, and nothing is acked while an item could be stranded."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis

from actors.item_ends import ItemsUnsettled
from actors.runtime import WorkerRuntime
from app import redis_retry
from app.embedded_redis import free_port
from app.schemas.agents import CreateAgent
from app.schemas.batches import LettaBatchRequest
from app.store import Store, keys
from app.tasks import FINALIZE_BATCH
from tests.fakes.model_servers import FakeOpenAIServer
from tests.support.runtime import RecordingTasks, openai_agent, run_chunk, worker_runtime


@pytest.fixture
def make_runtime(redis_url: str, tmp_path) -> Iterator[Any]:
    def make(**settings: Any) -> tuple[WorkerRuntime, RecordingTasks]:
        tasks = RecordingTasks()
        return worker_runtime(redis_url, tmp_path, tasks=tasks, simulated_ttft_ms=1, simulated_token_ms=0,
                              **settings), tasks

    yield make


def one_item_batch(store: Store, **batch: Any) -> tuple[str, str]:
    agent = store.agents.create(CreateAgent(model="simulated/echo"))
    batch_id, _ = store.batches.create(requests=[LettaBatchRequest(agent_id=agent["id"], input="hi")],
                                       metadata=None, completion_window_s=3600, **{"callback_url": None, **batch})
    return batch_id, store.batches.item_ids(batch_id, start=0, stop=0)[0]


def test_given_a_cancelled_batch_with_an_item_a_dead_worker_left_running_when_redelivered_then_it_settles(
        store, make_runtime):
    batch_id, item_id = one_item_batch(store, callback_url="http://example.com/hook")
    store.runs.claim(batch_id=batch_id, item_id=item_id, owner="dead", lease_s=0.1)
    store.batches.stop(batch_id, status="cancelled")
    time.sleep(0.2)
    runtime, tasks = make_runtime()
    run_chunk(runtime, batch_id)
    assert store.client.hgetall(keys.item(item_id))["status"] == "cancelled"
    assert store.batches.get(batch_id)["request_counts"]["running"] == 0
    assert (FINALIZE_BATCH, batch_id) in tasks.sent
    assert store.batches.finalize(batch_id) == ("terminal", "cancelled")


def test_given_an_item_held_under_a_live_lease_when_its_owner_dies_then_the_redelivered_chunk_waits_and_runs_it(
        store, make_runtime):
    batch_id, item_id = one_item_batch(store)
    store.runs.claim(batch_id=batch_id, item_id=item_id, owner="about-to-die", lease_s=1.0)
    runtime, tasks = make_runtime(item_lease_s=0.3)
    started = time.monotonic()
    run_chunk(runtime, batch_id)
    assert time.monotonic() - started >= 0.5  # it waited for the lease to lapse instead of acking
    item = store.client.hgetall(keys.item(item_id))
    assert item["status"] == "succeeded" and item["attempts"] == "2"
    assert (FINALIZE_BATCH, batch_id) in tasks.sent


def _one_request_with_commit_trouble(store: Store, make_runtime: Any, monkeypatch: pytest.MonkeyPatch,
                                     trouble: Callable[[int, WorkerRuntime, str], None],
                                     ) -> tuple[dict[str, str], int, int, bool]:
    """Run a one-request batch against the fake model, calling `trouble(n, runtime, batch_id)`
    before the commit's n-th try (0-based). Returns the item's hash, the commit's tries, the
    model calls made, and whether the batch's finalize was sent."""
    with FakeOpenAIServer() as model:
        agent_id = openai_agent(store, model, context_window=8000)
        batch_id, _ = store.batches.create(requests=[LettaBatchRequest(agent_id=agent_id, input="hi")],
                                           callback_url=None, metadata=None, completion_window_s=3600)
        [item_id] = store.batches.item_ids(batch_id, start=0, stop=0)
        runtime, tasks = make_runtime()
        real_commit, tries = runtime.store.commits.commit_each, []

        def troubled_commit(*args: Any, **kwargs: Any) -> Any:
            tries.append(1)
            trouble(len(tries) - 1, runtime, batch_id)
            return real_commit(*args, **kwargs)

        monkeypatch.setattr(runtime.store.commits, "commit_each", troubled_commit)
        run_chunk(runtime, batch_id)
        return (store.client.hgetall(keys.item(item_id)), len(tries), len(model.requests),
                (FINALIZE_BATCH, batch_id) in tasks.sent)


def test_given_redis_failing_at_the_commit_when_it_comes_back_then_the_run_commits_once_without_running_again(
        store, make_runtime, monkeypatch):
    def redis_away_three_times(n: int, _runtime: WorkerRuntime, _batch_id: str) -> None:
        if n < 3:
            raise redis.ConnectionError("Redis went away")

    item, tries, model_calls, finalized = _one_request_with_commit_trouble(store, make_runtime, monkeypatch,
                                                                           redis_away_three_times)
    assert tries == 4
    assert (item["status"], item["attempts"]) == ("succeeded", "1")
    assert model_calls == 1  # the answer in hand was kept, not asked for again
    assert finalized


@pytest.mark.parametrize(("refuse", "allow"), [
    (lambda client: client.replicaof("127.0.0.1", str(free_port())), lambda client: client.replicaof("NO", "ONE")),
    (lambda client: client.config_set("maxmemory", 1), lambda client: client.config_set("maxmemory", 0)),
], ids=["read-only during a failover", "maxmemory reached"])
def test_given_redis_refusing_writes_at_the_commit_when_it_takes_them_again_then_the_run_commits_once(
        store, make_runtime, monkeypatch, refuse, allow):
    """A failover in progress (the Redis reached is a replica until it is promoted) or a full
    Redis: the run's result waits, as for a Redis that is away, instead of failing the item."""
    def refused_twice(n: int, _runtime: WorkerRuntime, _batch_id: str) -> None:
        (refuse if n < 2 else allow)(store.client)

    try:
        item, tries, model_calls, finalized = _one_request_with_commit_trouble(store, make_runtime, monkeypatch,
                                                                               refused_twice)
    finally:
        allow(store.client)
    assert tries == 3
    assert (item["status"], item["attempts"]) == ("succeeded", "1")
    assert model_calls == 1
    assert finalized


def test_given_a_cancel_while_a_finished_run_waits_out_an_outage_to_commit_then_its_result_is_kept(
        store, make_runtime, monkeypatch):
    """The run ended before the cancel: its answer is committed once Redis is back, not thrown
    away and recorded as cancelled."""
    monkeypatch.setattr(redis_retry, "FIRST_DELAY_S", 1.0)  # the first wait for Redis: the cancel lands in it

    def cancelled_while_redis_is_away(n: int, runtime: WorkerRuntime, batch_id: str) -> None:
        if n == 0:
            store.batches.stop(batch_id, status="cancelled")
            # as the stop's pub/sub message does, once the commit waits for Redis
            asyncio.get_running_loop().call_later(0.1, runtime.stop_batch_locally, batch_id)
            raise redis.ConnectionError("Redis went away")

    item, tries, model_calls, _finalized = _one_request_with_commit_trouble(store, make_runtime, monkeypatch,
                                                                            cancelled_while_redis_is_away)
    assert tries == 2
    assert (item["status"], item["stop_reason"]) == ("succeeded", "end_turn")
    assert model_calls == 1


def test_given_one_item_that_fails_unexpectedly_when_its_chunk_runs_then_only_it_errors_and_its_siblings_finish(
        store, make_runtime, monkeypatch):
    agent = store.agents.create(CreateAgent(model="simulated/echo"))
    requests = [LettaBatchRequest(agent_id=agent["id"], input=text) for text in ("fine", "boom", "fine too")]
    batch_id, _ = store.batches.create(requests=requests, callback_url=None, metadata=None,
                                       completion_window_s=3600)
    runtime, tasks = make_runtime()
    real_prepare = None

    def prepare_with_a_bug(agent, request, **kwargs):
        if request.input == "boom":
            raise KeyError("a bug in one request's path")
        return real_prepare(agent, request, **kwargs)

    def patch_prepare() -> None:
        nonlocal real_prepare
        real_prepare = runtime.runner.prepare
        monkeypatch.setattr(runtime.runner, "prepare", prepare_with_a_bug)

    run_chunk(runtime, batch_id, 0, 2, on_start=patch_prepare)
    counts = store.batches.get(batch_id)["request_counts"]
    assert (counts["succeeded"], counts["errored"], counts["running"]) == (2, 1, 0)
    items = [store.client.hgetall(keys.item(item_id)) for item_id in store.batches.item_ids(batch_id, start=0, stop=2)]
    assert [item["status"] for item in items] == ["succeeded", "errored", "succeeded"]
    assert "Internal error" in items[1]["error"]
    assert (FINALIZE_BATCH, batch_id) in tasks.sent


def test_given_an_input_too_large_for_the_context_window_when_the_item_runs_then_it_ends_with_a_clear_error(
        store, make_runtime):
    with FakeOpenAIServer() as model:
        agent_id = openai_agent(store, model, context_window=1000)
        batch_id, _ = store.batches.create(requests=[LettaBatchRequest(agent_id=agent_id, input="x" * 10_000)],
                                           callback_url=None, metadata=None, completion_window_s=3600)
        [item_id] = store.batches.item_ids(batch_id, start=0, stop=0)
        runtime, tasks = make_runtime()
        run_chunk(runtime, batch_id)
        item = store.client.hgetall(keys.item(item_id))
        assert item["status"] == "errored" and item["stop_reason"] == "error"
        assert "does not fit the agent's context window of 1000 tokens" in item["error"]
        assert model.requests == []  # nothing was sent to the model
        assert (FINALIZE_BATCH, batch_id) in tasks.sent
        # the input is kept: the batch's messages show what was refused
        assert store.client.zcard(keys.batch_messages(batch_id)) == 1


def test_given_max_steps_zero_when_the_item_runs_then_it_ends_with_max_steps_and_no_model_call(store, make_runtime):
    with FakeOpenAIServer() as model:
        agent_id = openai_agent(store, model, context_window=8000)
        batch_id, _ = store.batches.create(requests=[LettaBatchRequest(agent_id=agent_id, input="hi", max_steps=0)],
                                           callback_url=None, metadata=None, completion_window_s=3600)
        [item_id] = store.batches.item_ids(batch_id, start=0, stop=0)
        runtime, _ = make_runtime()
        run_chunk(runtime, batch_id)
        item = store.client.hgetall(keys.item(item_id))
        assert (item["status"], item["stop_reason"]) == ("succeeded", "max_steps")
        assert model.requests == []


def test_given_an_agent_deleted_before_its_request_runs_when_the_item_runs_then_it_ends_with_error(
        store, make_runtime):
    batch_id, item_id = one_item_batch(store)
    store.agents.delete(store.batches.get(batch_id)["agent_id"])
    runtime, _ = make_runtime()
    run_chunk(runtime, batch_id)
    item = store.client.hgetall(keys.item(item_id))
    assert (item["status"], item["stop_reason"]) == ("errored", "error")
    assert "was deleted before this request ran" in item["error"]
    assert store.batches.get(batch_id)["request_counts"]["errored"] == 1


def test_given_an_item_that_runs_past_the_item_timeout_when_it_runs_then_it_ends_with_error(store, make_runtime):
    with FakeOpenAIServer(first_token_delay_s=5) as model:
        agent_id = openai_agent(store, model, context_window=8000)
        batch_id, _ = store.batches.create(requests=[LettaBatchRequest(agent_id=agent_id, input="hi")],
                                           callback_url=None, metadata=None, completion_window_s=3600)
        [item_id] = store.batches.item_ids(batch_id, start=0, stop=0)
        runtime, _ = make_runtime(item_timeout_s=0.5)
        started = time.monotonic()
        run_chunk(runtime, batch_id)
        assert time.monotonic() - started < 4
        item = store.client.hgetall(keys.item(item_id))
        assert (item["status"], item["stop_reason"]) == ("errored", "error")
        assert "longer than 0.5 s" in item["error"]


def test_given_an_item_whose_error_cannot_be_recorded_when_its_chunk_ends_then_the_chunk_stays_in_flight_for_a_retry(
        store, make_runtime):
    agent = store.agents.create(CreateAgent(model="simulated/echo"))
    requests = [LettaBatchRequest(agent_id=agent["id"], input=text) for text in ("fine", "broken", "fine too")]
    batch_id, _ = store.batches.create(requests=requests, callback_url=None, metadata=None,
                                       completion_window_s=3600)
    assert store.progress.claim_chunks(batch_id, budget=1, chunk_size=3) == [(0, 2)]
    broken = store.batches.item_ids(batch_id, start=1, stop=1)[0]
    # Its claim fails, and so do recording its error and giving it back (a key of the wrong type
    # stands for any fault that outlasts the item's own error handling).
    store.client.set(keys.item(broken), "not a hash")
    runtime, _ = make_runtime()
    with pytest.raises(ItemsUnsettled):  # Dramatiq retries the chunk; the sweep re-sends a dead letter
        run_chunk(runtime, batch_id, 0, 2)
    assert [chunk.start for chunk in store.progress.progress([batch_id])[0].chunks] == [0]
    counts = store.batches.get(batch_id)["request_counts"]
    assert (counts["succeeded"], counts["pending"]) == (2, 1)

    store.client.delete(keys.item(broken))  # the fault passes: the retried chunk ends the item
    run_chunk(make_runtime()[0], batch_id, 0, 2)
    assert store.batches.get(batch_id)["request_counts"]["succeeded"] == 3
    assert store.progress.progress([batch_id])[0].chunks == []
