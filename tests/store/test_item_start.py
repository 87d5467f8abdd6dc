"""Starting a batch item on a real Redis: the claim and everything its run reads, in one round
trip, with the claim's guarantees unchanged."""

from __future__ import annotations

import pytest

from app.engine.messages import new_message
from app.schemas.agents import CreateAgent
from app.schemas.batches import LettaBatchRequest
from app.store import Store, connect, keys
from app.store.item_start import SMALL_REQUEST_BYTES
from app.store.runs import RunRecord


@pytest.fixture
def store(redis_url: str) -> Store:
    store = Store(client=connect(redis_url))
    # The session's Redis keeps scripts other tests loaded: start every test from a full cache,
    # so that which of the claim's scripts an earlier test happened to load does not matter.
    for script in (store.starts.scripts.claim_items, store.starts.scripts.newer_messages):
        store.client.script_load(script.script)
    return store


def _batch(store: Store, *inputs: str) -> tuple[str, str, list[str]]:
    agent = store.agents.create(CreateAgent.model_validate({
        "model": "simulated/echo", "memory_blocks": [{"label": "human", "value": "Sam"}]}))
    requests = [LettaBatchRequest(agent_id=agent["id"], input=text) for text in inputs]
    batch_id, _ = store.batches.create(requests=requests, callback_url=None, metadata=None, completion_window_s=60)
    item_ids = store.batches.item_ids(batch_id, start=0, stop=-1)
    store.blobs.materialize(batch_id, item_ids, start=0)  # as run_chunk does before loading
    return agent["id"], batch_id, item_ids


def _commit(store: Store, agent_id: str, *texts: str) -> None:
    messages = [new_message("user", [{"type": "text", "text": text}], agent_id=agent_id, batch_item_id=None)
                for text in texts]
    store.runs.commit(agent_id=agent_id, record=RunRecord(outcome="succeeded", stop_reason="end_turn",
                                                          messages=messages))


def _start(store: Store, item, *, owner: str = "w1", after_seq: int = -1, limit: int = 200):
    [start] = store.claims.claim_many([item], owner=owner, lease_s=30, history_after_seq=lambda _agent: after_seq,
                                      history_limit=limit, history_max_bytes=100_000)
    return start


def test_given_a_chunk_of_items_when_loaded_then_each_comes_with_its_agent_and_request_size(store):
    agent_id, batch_id, item_ids = _batch(store, "one", "two")
    items = store.starts.load_items([*item_ids, "batch_item-missing"])
    assert sorted(items) == sorted(item_ids)
    assert {(item.batch_id, item.agent_id) for item in items.values()} == {(batch_id, agent_id)}
    assert all(item.request_bytes == len(store.runs.load_request(item.id).encode()) for item in items.values())


def test_given_a_pending_item_when_claimed_with_its_loads_then_it_runs_with_its_agent_history_and_request(store):
    agent_id, _, [item_id] = _batch(store, "hello")
    _commit(store, agent_id, "earlier", "later")
    start = _start(store, store.starts.load_items([item_id])[item_id])
    assert start.claim.action == "run"
    assert store.client.hget(keys.item(item_id), "status") == "running"
    assert start.agent == store.agents.get(agent_id)
    assert [message["content"][0]["text"] for _id, _seq, _size, message in start.newer] == ["earlier", "later"]
    assert LettaBatchRequest.model_validate_json(start.request).input == "hello"


def test_given_history_already_held_when_claimed_then_only_the_messages_after_it_come(store):
    agent_id, _, [first, second] = _batch(store, "a", "b")
    _commit(store, agent_id, "old")
    items = store.starts.load_items([first, second])
    [(_id, held_seq, _size, _message)] = _start(store, items[first]).newer
    _commit(store, agent_id, "new")
    newer = _start(store, items[second], after_seq=held_seq).newer
    assert [message["content"][0]["text"] for _id, _seq, _size, message in newer] == ["new"]


def test_given_an_item_another_owner_holds_when_claimed_with_its_loads_then_it_is_busy_and_stays_theirs(store):
    _, _, [item_id] = _batch(store, "hello")
    item = store.starts.load_items([item_id])[item_id]
    assert _start(store, item, owner="w1").claim.action == "run"
    assert _start(store, item, owner="w2").claim.action == "busy"
    assert store.client.hget(keys.item(item_id), "lease_owner") == "w1"


def test_given_redis_lost_its_scripts_when_an_item_is_claimed_with_its_loads_then_it_is_claimed_exactly_once(store):
    _, _, [item_id] = _batch(store, "hello")
    item = store.starts.load_items([item_id])[item_id]
    store.client.script_flush()
    start = _start(store, item)
    assert start.claim.action == "run" and start.agent is not None
    assert store.client.hget(keys.item(item_id), "attempts") == "1"
    assert store.batches.get(item.batch_id)["request_counts"]["running"] == 1


def test_given_a_large_request_when_claimed_with_its_loads_then_its_body_waits_for_the_memory_budget(store):
    _, _, [item_id] = _batch(store, "x" * (SMALL_REQUEST_BYTES + 1))
    start = _start(store, store.starts.load_items([item_id])[item_id])
    assert start.claim.action == "run" and start.request is None


def test_given_redis_lost_only_the_history_script_when_claimed_then_the_claim_stands_and_history_is_left_to_the_run(
        store):
    _, _, [item_id] = _batch(store, "hello")
    item = store.starts.load_items([item_id])[item_id]
    store.client.script_flush()
    store.client.script_load(store.starts.scripts.claim_items.script)
    start = _start(store, item)
    assert (start.claim.action, start.newer) == ("run", None)
    assert store.client.hget(keys.item(item_id), "attempts") == "1"
