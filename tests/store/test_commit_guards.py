"""What commit_items.lua, commit_run.lua and stop_batch.lua refuse, on a real Redis: a second answer to one approval,
data that would fail halfway through a script (nothing may be written), and keys of a deleted agent."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest
import redis

from app.engine.messages import approval_request_message, approval_response_message, new_message
from app.providers.base import ToolCall
from app.schemas.agents import CreateAgent
from app.schemas.batches import LettaBatchRequest
from app.store import Store, keys
from app.store.monitor import METRIC_ARGS, METRIC_KEYS
from app.store.runs import ALREADY_ANSWERED, RunRecord


def _agent(store: Store) -> str:
    return store.agents.create(CreateAgent(model="simulated/echo", memory_blocks=[
        {"label": "human", "value": "Name: Sam"}]))["id"]


def _claimed_batch(store: Store, agent_id: str, n: int) -> tuple[str, list[str]]:
    requests = [LettaBatchRequest(agent_id=agent_id, input=f"q{i}") for i in range(n)]
    batch_id, _ = store.batches.create(requests=requests, callback_url=None, metadata=None, completion_window_s=60)
    item_ids = store.batches.item_ids(batch_id, start=0, stop=-1)
    for item_id in item_ids:
        assert store.runs.claim(batch_id=batch_id, item_id=item_id, owner="w1", lease_s=30).action == "run"
    return batch_id, item_ids


@pytest.fixture
def snapshot(redis_url: str) -> Callable[[], dict[str, object]]:
    """Every key with its value: equal snapshots mean nothing was written."""
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    read = {"string": client.get, "hash": client.hgetall, "set": client.smembers,
            "zset": lambda key: client.zrange(key, 0, -1, withscores=True),
            "list": lambda key: client.lrange(key, 0, -1)}
    return lambda: {key: read[client.type(key)](key) for key in client.keys("*")}


# -- one approval, two answers -----------------------------------------------------------------

def _paused(store: Store, agent_id: str) -> tuple[dict, ToolCall]:
    """The agent's history ends with an approval request for core_memory_append (committed as a run does)."""
    call = ToolCall(id="call_1", name="core_memory_append", arguments='{"label": "human", "content": "Likes tea."}')
    request = approval_request_message([call], agent_id=agent_id, batch_item_id=None, step_id="step-1")
    user = new_message("user", [{"type": "text", "text": "remember tea"}], agent_id=agent_id, batch_item_id=None)
    store.runs.commit(agent_id=agent_id, record=RunRecord(outcome="succeeded", stop_reason="requires_approval",
                                                          messages=[user, request]))
    return request, call


def _answer(store: Store, agent_id: str, request: dict, call: ToolCall, item_id: str) -> RunRecord:
    """A run that approved the call and ran it: the approval response, the tool's result, the edited block."""
    response = approval_response_message([{"type": "approval", "tool_call_id": call.id, "approve": True}],
                                         request_id=request["id"], agent_id=agent_id, batch_item_id=item_id,
                                         step_id=None)
    result = new_message("tool", [{"type": "text", "text": "ok"}], agent_id=agent_id, batch_item_id=item_id,
                         tool_call_id=call.id)
    block = store.agents.blocks(agent_id)["human"]
    edited = block | {"value": block["value"] + "\nLikes tea.", "base_version": block.get("version", 0)}
    return RunRecord(outcome="succeeded", stop_reason="end_turn", messages=[response, result], blocks=[edited],
                     block_edits=[("core_memory_append", {"label": "human", "content": "Likes tea."})],
                     answers_approval=request["id"])


def test_given_one_pending_approval_when_two_runs_answer_it_then_the_second_commit_is_refused_and_writes_nothing(
        store):
    agent_id = _agent(store)
    request, call = _paused(store, agent_id)
    batch_id, (first_item, second_item) = _claimed_batch(store, agent_id, 2)
    first = _answer(store, agent_id, request, call, first_item)
    second = _answer(store, agent_id, request, call, second_item)  # read the same state: nothing committed yet

    won = store.runs.commit(agent_id=agent_id, record=first, batch_id=batch_id, item_id=first_item)
    lost = store.runs.commit(agent_id=agent_id, record=second, batch_id=batch_id, item_id=second_item)

    assert won.committed and not won.refused
    assert lost.committed and lost.refused and lost.remaining == 0
    assert store.agents.blocks(agent_id)["human"]["value"] == "Name: Sam\nLikes tea."
    stored = store.client.zrange(keys.batch_messages(batch_id), 0, -1)
    assert stored == [m["id"] for m in first.messages]
    assert not any(store.client.exists(keys.message(m["id"])) for m in second.messages)
    items = {item["id"]: item for item in store.batches.items_page(batch_id, after=None, before=None, limit=10,
                                                                     order="asc")}
    assert items[second_item]["status"] == "errored" and items[second_item]["error"] == ALREADY_ANSWERED
    assert items[second_item]["stop_reason"] == "error"
    counts = store.batches.get(batch_id)["request_counts"]
    assert (counts["succeeded"], counts["errored"], counts["running"]) == (1, 1, 0)


def test_given_an_answered_approval_when_a_late_answer_commits_outside_a_batch_then_it_is_refused_with_nothing_written(
        store, snapshot):
    agent_id = _agent(store)
    request, call = _paused(store, agent_id)
    first, second = (_answer(store, agent_id, request, call, None) for _ in range(2))
    assert store.runs.commit(agent_id=agent_id, record=first).committed
    before = snapshot()
    late = store.runs.commit(agent_id=agent_id, record=second)
    assert late.refused and not late.committed
    assert snapshot() == before


def test_given_a_run_that_pauses_again_after_answering_when_committed_then_its_new_request_is_the_pending_one(store):
    agent_id = _agent(store)
    request, call = _paused(store, agent_id)
    answer = _answer(store, agent_id, request, call, None)
    again = approval_request_message([ToolCall(id="call_2", name="core_memory_append", arguments="{}")],
                                     agent_id=agent_id, batch_item_id=None, step_id="step-2")
    answer.messages.append(again)
    assert store.runs.commit(agent_id=agent_id, record=answer).committed
    assert store.client.get(keys.agent_pending_approval(agent_id)) == again["id"]
    assert store.runs.commit(agent_id=agent_id, record=_answer(store, agent_id, request, call, None)).refused


# -- nothing written when a later step of a script would fail -----------------------------------

def _raw_commit(store: Store, agent_id: str, batch_id: str, item_id: str, payload: dict,
                first_token_us: str = "") -> None:
    item = {"agent": 1, **payload, "outcome": "succeeded", "stop_reason": "end_turn", "ttft_ns": "5",
            "total_ns": "9", "first_token_us": first_token_us}
    store.runs.scripts.commit_items(
        keys=[keys.SEQ, keys.batch(batch_id), keys.batch_messages(batch_id), *METRIC_KEYS, keys.agent(agent_id),
              keys.agent_blocks(agent_id), keys.agent_messages(agent_id), keys.agent_pending_approval(agent_id),
              keys.item(item_id)],
        args=[keys.MESSAGE_PREFIX, *METRIC_ARGS, ALREADY_ANSWERED, "error", "w1", json.dumps([item]), 1])


def _message(agent_id: str, item_id: str) -> list[str]:
    message = new_message("assistant", [{"type": "text", "text": "a"}], agent_id=agent_id, batch_item_id=item_id)
    return [message["id"], json.dumps(message)]


@pytest.mark.parametrize(("case", "payload", "first_token_us"), [
    ("a message that is not [id, json] after a good one",
     lambda a, i: {"messages": [_message(a, i), ["m2", {"not": "text"}]], "blocks": []}, ""),
    ("a first token time that is not a number", lambda a, i: {"messages": [_message(a, i)], "blocks": []}, "soon"),
    ("a block that is not JSON",
     lambda a, i: {"messages": [_message(a, i)], "blocks": [["human", "{not json", 0]]}, ""),
])
def test_given_bad_data_when_an_item_commit_would_fail_midway_then_it_fails_before_writing_anything(
        store, snapshot, case, payload, first_token_us):
    agent_id = _agent(store)
    batch_id, [item_id] = _claimed_batch(store, agent_id, 1)
    before = snapshot()
    with pytest.raises(redis.ResponseError, match="nothing was written"):
        _raw_commit(store, agent_id, batch_id, item_id, payload(agent_id, item_id), first_token_us)
    assert snapshot() == before, case


def test_given_a_corrupt_batch_counter_when_an_item_commits_then_nothing_is_written(store, snapshot):
    agent_id = _agent(store)
    batch_id, [item_id] = _claimed_batch(store, agent_id, 1)
    store.client.hset(keys.batch(batch_id), "succeeded", "many")
    before = snapshot()
    with pytest.raises(redis.ResponseError, match="succeeded is not an integer"):
        _raw_commit(store, agent_id, batch_id, item_id, {"messages": [_message(agent_id, item_id)], "blocks": []})
    assert snapshot() == before


def test_given_a_corrupt_creation_time_when_a_batch_is_cancelled_then_nothing_is_written(store, snapshot):
    agent_id = _agent(store)
    requests = [LettaBatchRequest(agent_id=agent_id, input="q")]
    batch_id, _ = store.batches.create(requests=requests, callback_url=None, metadata=None, completion_window_s=60)
    store.client.hset(keys.batch(batch_id), "created_us", "yesterday")
    before = snapshot()
    with pytest.raises(redis.ResponseError, match="nothing was written"):
        store.batches.stop(batch_id, status="cancelled")
    assert snapshot() == before


# -- a deleted agent stays deleted ----------------------------------------------------------------

def _agent_keys(store: Store, agent_id: str) -> list[str]:
    return sorted(store.client.scan_iter(f"{keys.agent(agent_id)}*"))


def test_given_an_agent_deleted_while_its_item_ran_when_the_item_commits_then_no_agent_key_comes_back(store):
    agent_id = _agent(store)
    request, call = _paused(store, agent_id)
    batch_id, [item_id] = _claimed_batch(store, agent_id, 1)
    record = _answer(store, agent_id, request, call, item_id)
    record.messages.append(approval_request_message([call], agent_id=agent_id, batch_item_id=item_id, step_id="s"))
    assert store.agents.delete(agent_id)
    assert _agent_keys(store, agent_id) == []
    assert store.runs.commit(agent_id=agent_id, record=record, batch_id=batch_id, item_id=item_id).committed
    assert _agent_keys(store, agent_id) == []
    assert store.client.zcard(keys.batch_messages(batch_id)) == 3  # still readable through the batch


def test_given_an_agent_deleted_during_a_synchronous_run_when_it_commits_then_nothing_is_left_behind(store, snapshot):
    agent_id = _agent(store)
    store.agents.delete(agent_id)
    before = snapshot()
    message = new_message("user", [{"type": "text", "text": "hi"}], agent_id=agent_id, batch_item_id=None)
    store.runs.commit(agent_id=agent_id, record=RunRecord(outcome="succeeded", stop_reason="end_turn",
                                                          messages=[message]))
    assert snapshot() == before
