"""A batch's requests stored as blobs on a real Redis: no item hash until a worker claims the
item, then a small one; ids, order, agents and request bodies exactly as submitted."""

from __future__ import annotations

from app.schemas.agents import CreateAgent
from app.schemas.batches import LettaBatchRequest
from app.store import Store, keys

#: Long enough that a hash holding it as a field would leave Redis's compact encoding (64 bytes).
LONG_INPUT = "Résumé ✓ — " + "x" * 150


def _batch(store: Store, requests: list[LettaBatchRequest], blob_size: int = 3) -> tuple[str, list[str]]:
    batch_id, _ = store.batches.create(requests=requests, callback_url=None, metadata=None, completion_window_s=60,
                                       blob_size=blob_size)
    return batch_id, store.batches.item_ids(batch_id, start=0, stop=-1)


def test_given_a_created_batch_when_stored_then_its_requests_are_blobs_and_no_item_has_a_hash_yet(store):
    agent = store.agents.create(CreateAgent(model="simulated/echo"))
    batch_id, item_ids = _batch(store, [LettaBatchRequest(agent_id=agent["id"], input=f"q{i}") for i in range(7)])

    assert len(item_ids) == len(set(item_ids)) == 7
    assert store.client.exists(*[keys.item(item_id) for item_id in item_ids]) == 0
    assert [store.client.exists(keys.batch_requests(batch_id, number)) for number in range(4)] == [1, 1, 1, 0]


def test_given_an_unclaimed_item_when_claimed_then_its_hash_is_small_and_compact_and_its_request_loads_from_the_blob(
        store):
    agent = store.agents.create(CreateAgent(model="simulated/echo"))
    requests = [LettaBatchRequest(agent_id=agent["id"], input=f"{LONG_INPUT} {i}", max_steps=i + 1) for i in range(5)]
    batch_id, item_ids = _batch(store, requests)

    assert store.runs.claim(batch_id=batch_id, item_id=item_ids[4], owner="w1", lease_s=30).action == "run"

    stored = store.client.hgetall(keys.item(item_ids[4]))
    assert (stored["status"], stored["idx"], stored["agent_id"], stored["batch_id"]) == (
        "running", "4", agent["id"], batch_id)
    assert "request" not in stored
    assert "id" not in stored  # the key names it: about 50 bytes an item
    assert store.client.object("encoding", keys.item(item_ids[4])) in ("ziplist", "listpack")
    assert LettaBatchRequest.model_validate_json(store.runs.load_request(item_ids[4])) == requests[4]
    assert store.runs.load_item(item_ids[4]).request_bytes == len(store.runs.load_request(item_ids[4]).encode())


def test_given_a_materialized_chunk_when_it_is_materialized_again_after_a_claim_then_the_claim_is_kept(store):
    agent = store.agents.create(CreateAgent(model="simulated/echo"))
    batch_id, item_ids = _batch(store, [LettaBatchRequest(agent_id=agent["id"], input=f"q{i}") for i in range(4)])

    assert store.blobs.materialize(batch_id, item_ids[1:4], start=1) == 3
    assert store.runs.claim(batch_id=batch_id, item_id=item_ids[2], owner="w1", lease_s=30).action == "run"
    assert store.blobs.materialize(batch_id, item_ids, start=0) == 1

    assert store.client.hget(keys.item(item_ids[2]), "lease_owner") == "w1"
    assert [store.client.hget(keys.item(item_id), "status") for item_id in item_ids] == [
        "pending", "pending", "running", "pending"]
    assert store.batches.get(batch_id)["request_counts"]["running"] == 1


def test_given_a_batch_of_many_agents_when_its_unclaimed_requests_are_read_then_each_has_its_agent_and_index(store):
    agents = [store.agents.create(CreateAgent(model="simulated/echo"))["id"] for _ in range(2)]
    requests = [LettaBatchRequest(agent_id=agents[i % 2], input=f"{LONG_INPUT} {i}") for i in range(5)]
    batch_id, item_ids = _batch(store, requests)
    store.runs.claim(batch_id=batch_id, item_id=item_ids[1], owner="w1", lease_s=30)

    page = store.batches.items_page(batch_id, after=item_ids[0], before=None, limit=10, order="asc")

    assert [(item["id"], item["agent_id"], item["index"], item["status"]) for item in page] == [
        (item_ids[i], agents[i % 2], i, "running" if i == 1 else "pending") for i in range(1, 5)]
    exported = list(store.results.stream(batch_id, page_items=2))
    assert [(line["batch_item_id"], line["agent_id"], line["index"]) for line in exported] == [
        (item_ids[i], agents[i % 2], i) for i in range(5)]


def test_given_blob_stored_requests_when_items_are_listed_and_made_then_no_blob_is_read_and_each_request_loads_by_range(
        store):
    agents = [store.agents.create(CreateAgent(model="simulated/echo"))["id"] for _ in range(2)]
    requests = [LettaBatchRequest(agent_id=agents[i % 2], input=f"{LONG_INPUT} {i}") for i in range(5)]
    batch_id, item_ids = _batch(store, requests)
    # Requests may be megabytes each: listing and making items reads only the blobs' place lists.
    blob = keys.batch_requests(batch_id, 0)
    store.client.rename(blob, blob + ":away")
    assert [fields["agent_id"] for fields in store.blobs.unmaterialized(batch_id, item_ids).values()] == [
        agents[i % 2] for i in range(5)]
    assert store.blobs.materialize(batch_id, item_ids, start=0) == 5
    store.client.rename(blob + ":away", blob)

    assert [LettaBatchRequest.model_validate_json(store.runs.load_request(item_id)) for item_id in item_ids] == requests


def test_given_requests_of_every_message_kind_when_stored_in_a_blob_then_each_loads_back_equal(store):
    agent = store.agents.create(CreateAgent(model="simulated/echo"))["id"]
    bodies = [
        {"input": [{"type": "text", "text": "part"}]},
        {"messages": [{"role": "user", "content": "hi", "name": "ann"}], "max_steps": 2},
        {"messages": [{"type": "approval", "approvals": [
            {"type": "tool", "tool_call_id": "c1", "tool_return": "42"},
            {"tool_call_id": "c2", "approve": False, "reason": "no"}]}]},
        {"messages": [{"type": "tool_return", "tool_returns": [{"type": "tool", "tool_call_id": "c3",
                                                                "tool_return": "ok", "status": "error"}]}]},
        {"input": "plain", "use_assistant_message": False, "client_tools": [{"name": "lookup"}]},
    ]
    requests = [LettaBatchRequest.model_validate({"agent_id": agent, **body}) for body in bodies]
    batch_id, item_ids = _batch(store, requests, blob_size=2)
    store.blobs.materialize(batch_id, item_ids, start=0)

    loaded = [LettaBatchRequest.model_validate_json(store.runs.load_request(item_id)) for item_id in item_ids]

    assert loaded == requests
    assert type(loaded[2].messages[0].approvals[0]).__name__ == "ToolReturnItem"


def test_given_an_item_marked_waiting_before_its_hash_was_made_when_claimed_then_it_runs_and_the_new_run_waits_for_nothing(  # noqa: E501
        store):
    agent = store.agents.create(CreateAgent(model="simulated/echo"))
    batch_id, [item_id] = _batch(store, [LettaBatchRequest(agent_id=agent["id"], input="q")])
    store.model_limits.mark_waiting(item_id, reason="streams", owner="w1")

    assert store.runs.claim(batch_id=batch_id, item_id=item_id, owner="w1", lease_s=30).action == "run"
    stored = store.client.hgetall(keys.item(item_id))
    assert (stored["status"], stored["agent_id"], stored.get("waiting")) == ("running", agent["id"], None)


def test_given_a_cancelled_batch_of_many_agents_when_its_request_blobs_are_dropped_then_items_still_list_and_settle(
        store):
    agents = [store.agents.create(CreateAgent(model="simulated/echo"))["id"] for _ in range(2)]
    batch_id, item_ids = _batch(store, [LettaBatchRequest(agent_id=agents[i % 2], input=f"q{i}") for i in range(7)])
    store.batches.stop(batch_id, status="cancelled")
    assert store.batches.finalize(batch_id)[0] == "terminal"

    assert store.blobs.drop_requests(batch_id) == 3
    assert store.blobs.drop_requests(batch_id) == 0

    assert not store.client.exists(*[keys.batch_requests(batch_id, number) for number in range(3)])
    page = store.batches.items_page(batch_id, after=None, before=None, limit=10, order="asc")
    assert [(item["agent_id"], item["status"]) for item in page] == [(agents[i % 2], "cancelled") for i in range(7)]
    assert store.runs.claim(batch_id=batch_id, item_id=item_ids[5], owner="w1", lease_s=30).action == "stopped"
