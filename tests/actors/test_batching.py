"""Claims and commits batched per event-loop tick (actors/batching.py), on a real Redis: items that
are ready together go in one round trip, and each still gets exactly its own outcome."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import redis

from actors.batching import MAX_ITEMS_PER_FLUSH, ClaimBatcher, CommitBatcher, _Batcher
from app.engine.history import HistoryCache
from app.engine.messages import new_message
from app.redis_retry import RedisRetry
from app.schemas.agents import CreateAgent
from app.schemas.batches import LettaBatchRequest
from app.store import Store, keys
from app.store.runs import RunRecord
from tests.fakes.model_servers import FakeOpenAIServer
from tests.support.runtime import openai_agent, run_in_runtime, worker_runtime


def _batch(store: Store, n: int, **agent: Any) -> tuple[str, str, list[str]]:
    agent_id = store.agents.create(CreateAgent(model="simulated/echo", **agent))["id"]
    requests = [LettaBatchRequest(agent_id=agent_id, input=f"q{i}") for i in range(n)]
    batch_id, _ = store.batches.create(requests=requests, callback_url=None, metadata=None, completion_window_s=60)
    return agent_id, batch_id, store.batches.item_ids(batch_id, start=0, stop=-1)


def _appending(store: Store, agent_id: str, item_id: str, text: str) -> RunRecord:
    """A run that appended `text` to the agent's `human` block, as read before any run committed."""
    block = store.agents.blocks(agent_id)["human"]
    edited = block | {"value": f"{block['value']}\n{text}", "base_version": block.get("version", 0)}
    messages = [new_message("user", [{"type": "text", "text": text}], agent_id=agent_id, batch_item_id=item_id)]
    return RunRecord(outcome="succeeded", stop_reason="end_turn", messages=messages, blocks=[edited],
                     block_edits=[("core_memory_append", {"label": "human", "content": text})])


def test_given_two_runs_of_one_agent_ending_in_one_tick_when_committed_then_one_flush_takes_both_and_the_second_replays(
        store):
    agent_id, batch_id, item_ids = _batch(store, 2, memory_blocks=[{"label": "human", "value": "Name: Sam"}])
    for item_id in item_ids:
        assert store.runs.claim(batch_id=batch_id, item_id=item_id, owner="w1", lease_s=30).action == "run"
    records = [_appending(store, agent_id, item_id, text)
               for item_id, text in zip(item_ids, ["Likes tea.", "Likes jazz."], strict=True)]
    commits = CommitBatcher(store=store, owner="w1", redis_retry=RedisRetry(give_up=lambda: False))

    async def both() -> list[Any]:
        return await asyncio.gather(*(commits.commit(agent_id=agent_id, record=record, batch_id=batch_id,
                                                     item_id=item_id)
                                      for item_id, record in zip(item_ids, records, strict=True)))

    first, second = asyncio.run(both())
    assert first.committed and second.committed and second.remaining == 0
    # One flush for both; the second run's edit, stale there, replayed on the first's in a second.
    assert (commits.batcher.flushes, commits.batcher.entries) == (2, 3)
    assert store.agents.blocks(agent_id)["human"]["value"] == "Name: Sam\nLikes tea.\nLikes jazz."
    history = store.client.zrange(keys.agent_messages(agent_id), 0, -1)
    assert history == [records[0].messages[0]["id"], records[1].messages[0]["id"]]


def test_given_a_chunk_of_items_ready_in_one_tick_when_claimed_then_one_flush_claims_them_all(store):
    agent_id, batch_id, item_ids = _batch(store, 5)
    _ids, stored = store.starts.load_chunk(batch_id, start=0, stop=4)
    history = HistoryCache(store=store, max_messages=50, max_bytes=1 << 20)
    claims = ClaimBatcher(store=store, owner="w1", lease_s=30, history=history)

    async def claim_all() -> list[Any]:
        return await asyncio.gather(*(claims.claim(stored[item_id]) for item_id in item_ids))

    starts = asyncio.run(claim_all())
    assert [start.claim.action for start in starts] == ["run"] * 5
    assert (claims.batcher.flushes, claims.batcher.entries) == (1, 5)
    assert [LettaBatchRequest.model_validate_json(start.request).input for start in starts] == [
        f"q{i}" for i in range(5)]
    assert all(start.agent["id"] == agent_id for start in starts)
    counts = store.batches.get(batch_id)["request_counts"]
    assert counts["running"] == 5 and counts["pending"] == 0
    # The claim made each item's hash (no materialize step before it).
    assert store.client.hget(keys.item(item_ids[3]), "idx") == "3"
    assert store.client.hget(keys.item(item_ids[3]), "lease_owner") == "w1"
    assert not store.client.hexists(keys.item(item_ids[3]), "id")  # its key names it
    assert [item["id"] for item in store.batches.items_page(batch_id, after=None, before=None, limit=10,
                                                            order="asc")] == item_ids


def test_given_one_chunk_delivered_twice_to_one_process_when_both_run_at_once_then_each_item_runs_once(
        store, redis_url, tmp_path):
    with FakeOpenAIServer() as model:
        agent_id = openai_agent(store, model)
        requests = [LettaBatchRequest(agent_id=agent_id, input=f"question {i}") for i in range(4)]
        batch_id, _ = store.batches.create(requests=requests, callback_url=None, metadata=None,
                                           completion_window_s=60)
        runtime = worker_runtime(redis_url, tmp_path, item_lease_s=3)
        run_in_runtime(runtime, lambda: asyncio.gather(runtime.run_chunk(batch_id, 0, 3),
                                                       runtime.run_chunk(batch_id, 0, 3)))
        asked = sorted(message["content"] for request in model.requests for message in request["messages"]
                       if message["role"] == "user" and message["content"].startswith("question"))
    assert store.batches.get(batch_id)["request_counts"]["succeeded"] == 4
    # Each item's question reached the model once (a later prompt carries earlier ones as history).
    assert len(model.requests) == 4, asked


def test_given_one_item_whose_hash_is_corrupt_in_a_flush_when_committed_then_only_it_fails_and_nothing_is_half_written(
        store):
    agent_id, batch_id, item_ids = _batch(store, 3)
    for item_id in item_ids:
        assert store.runs.claim(batch_id=batch_id, item_id=item_id, owner="w1", lease_s=30).action == "run"
    store.client.delete(keys.item(item_ids[1]))
    store.client.set(keys.item(item_ids[1]), "not a hash")
    records = [RunRecord(outcome="succeeded", stop_reason="end_turn", messages=[new_message(
        "user", [{"type": "text", "text": item_id}], agent_id=agent_id, batch_item_id=item_id)])
        for item_id in item_ids]
    commits = CommitBatcher(store=store, owner="w1", redis_retry=RedisRetry(give_up=lambda: False))

    async def all_three() -> list[Any]:
        return await asyncio.gather(*(commits.commit(agent_id=agent_id, record=record, batch_id=batch_id,
                                                     item_id=item_id)
                                      for item_id, record in zip(item_ids, records, strict=True)),
                                    return_exceptions=True)

    first, second, third = asyncio.run(all_three())
    assert first.committed and third.committed
    assert isinstance(second, redis.ResponseError)
    assert [store.client.hget(keys.item(item_ids[i]), "status") for i in (0, 2)] == ["succeeded", "succeeded"]
    counts = store.batches.get(batch_id)["request_counts"]
    assert counts["succeeded"] == 2 and counts["running"] == 1
    assert store.client.zrange(keys.batch_messages(batch_id), 0, -1) == [
        records[0].messages[0]["id"], records[2].messages[0]["id"]]


def test_given_more_items_than_one_flush_holds_ready_in_one_tick_when_sent_then_each_call_carries_at_most_the_cap():
    """One script call blocks Redis for every other client while it runs: a call carries at most
    MAX_ITEMS_PER_FLUSH items, and each item still gets its own answer."""
    calls: list[list[int]] = []

    def send(entries: list[int]) -> list[int]:
        calls.append(entries)
        return [entry * 10 for entry in entries]

    batcher = _Batcher(send=send)
    ready = 2 * MAX_ITEMS_PER_FLUSH + 7

    async def submit_all() -> list[int]:
        return await asyncio.gather(*(batcher.submit(entry) for entry in range(ready)))

    answers = asyncio.run(submit_all())
    assert [len(call) for call in calls] == [MAX_ITEMS_PER_FLUSH, MAX_ITEMS_PER_FLUSH, 7]
    assert answers == [entry * 10 for entry in range(ready)]
    assert MAX_ITEMS_PER_FLUSH <= 50


def _ran(store: Store, agent_id: str, item_id: str) -> RunRecord:
    return RunRecord(outcome="succeeded", stop_reason="end_turn", messages=[new_message(
        "user", [{"type": "text", "text": item_id}], agent_id=agent_id, batch_item_id=item_id)])


def _commit_together(commits: CommitBatcher, entries: list[tuple[str, str, str, RunRecord]]) -> list[Any]:
    async def together() -> list[Any]:
        return await asyncio.gather(*(commits.commit(agent_id=agent_id, record=record, batch_id=batch_id,
                                                     item_id=item_id)
                                      for agent_id, batch_id, item_id, record in entries), return_exceptions=True)

    return asyncio.run(together())


def test_given_a_flush_of_two_batches_one_with_a_corrupt_item_when_committed_then_the_others_item_is_told_it_committed(
        store):
    """The corrupt batch's call fails after the other batch's call wrote its item: that item's
    answer is its own commit (committed, nothing left), not the duplicate its re-send meets."""
    good_agent, good_batch, [good_item] = _batch(store, 1)
    bad_agent, bad_batch, [bad_item] = _batch(store, 1)
    for batch_id, item_id in ((good_batch, good_item), (bad_batch, bad_item)):
        assert store.runs.claim(batch_id=batch_id, item_id=item_id, owner="w1", lease_s=30).action == "run"
    store.client.delete(keys.item(bad_item))
    store.client.set(keys.item(bad_item), "not a hash")
    commits = CommitBatcher(store=store, owner="w1", redis_retry=RedisRetry(give_up=lambda: False))
    good, bad = _commit_together(commits, [(good_agent, good_batch, good_item, _ran(store, good_agent, good_item)),
                                           (bad_agent, bad_batch, bad_item, _ran(store, bad_agent, bad_item))])
    assert isinstance(bad, redis.ResponseError)
    assert store.client.hget(keys.item(good_item), "status") == "succeeded"
    assert (good.committed, good.remaining) == (True, 0)


def _two_running_items_one_to_a_slice(store: Store, monkeypatch: pytest.MonkeyPatch) -> tuple[str, str, list[str]]:
    """A batch of two items claimed by w1, whose commits go to Redis one item a slice."""
    from app.store import commits as commits_module

    agent_id, batch_id, item_ids = _batch(store, 2)
    for item_id in item_ids:
        assert store.runs.claim(batch_id=batch_id, item_id=item_id, owner="w1", lease_s=30).action == "run"
    monkeypatch.setattr(commits_module, "COMMIT_SLICE_BYTES", 1)
    return agent_id, batch_id, item_ids


def test_given_a_flush_sent_in_two_slices_when_the_second_fails_then_the_first_slices_items_keep_their_own_answers(
        store, monkeypatch):
    agent_id, batch_id, item_ids = _two_running_items_one_to_a_slice(store, monkeypatch)
    store.client.delete(keys.item(item_ids[1]))
    store.client.set(keys.item(item_ids[1]), "not a hash")
    commits = CommitBatcher(store=store, owner="w1", redis_retry=RedisRetry(give_up=lambda: False))
    first, second = _commit_together(commits, [(agent_id, batch_id, item_id, _ran(store, agent_id, item_id))
                                               for item_id in item_ids])
    assert isinstance(second, redis.ResponseError)
    assert store.client.hget(keys.item(item_ids[0]), "status") == "succeeded"
    assert (first.committed, first.remaining) == (True, 1)


def test_given_redis_lost_between_two_slices_of_a_flush_when_it_is_back_then_the_first_slices_item_keeps_its_commit(
        store, monkeypatch):
    agent_id, batch_id, item_ids = _two_running_items_one_to_a_slice(store, monkeypatch)
    real_commit, sent = store.commits._commit, []

    def gone_after_the_first_slice(entries: Any, owner: str) -> Any:
        sent.append(entries[0].item_id)
        if len(sent) == 2:
            raise redis.ConnectionError("Redis went away")
        return real_commit(entries, owner)

    monkeypatch.setattr(store.commits, "_commit", gone_after_the_first_slice)
    commits = CommitBatcher(store=store, owner="w1", redis_retry=RedisRetry(give_up=lambda: False))
    first, second = _commit_together(commits, [(agent_id, batch_id, item_id, _ran(store, agent_id, item_id))
                                               for item_id in item_ids])
    assert (first.committed, first.remaining) == (True, 1)
    assert (second.committed, second.remaining) == (True, 0)
    # Only the slice that did not go out was sent again.
    assert sent == [item_ids[0], item_ids[1], item_ids[1]]
