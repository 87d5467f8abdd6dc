"""The results export over HTTP on a real Redis: order, completeness and each request's own
messages, on a batch large enough to span many pages."""

from __future__ import annotations

import json
import random

from app.engine.messages import new_message
from app.schemas.agents import CreateAgent
from app.schemas.batches import LettaBatchRequest
from app.store import Store, connect
from app.store.runs import RunRecord


def _commit(store: Store, agent_id: str, batch_id: str, item_id: str, n: int) -> None:
    messages = [new_message("user", [{"type": "text", "text": f"q{n}"}], agent_id=agent_id, batch_item_id=item_id),
                new_message("assistant", [{"type": "text", "text": f"a{n}"}], agent_id=agent_id,
                            batch_item_id=item_id)]
    record = RunRecord(outcome="succeeded", stop_reason="end_turn", messages=messages, ttft_ns=n, total_duration_ns=n)
    assert store.runs.commit(agent_id=agent_id, record=record, batch_id=batch_id, item_id=item_id).committed


def _batch(store: Store, size: int) -> tuple[str, str, list[str]]:
    agent = store.agents.create(CreateAgent(model="simulated/echo"))
    requests = [LettaBatchRequest(agent_id=agent["id"], input=f"q{i}") for i in range(size)]
    batch_id, _ = store.batches.create(requests=requests, callback_url=None, metadata=None, completion_window_s=3600)
    return agent["id"], batch_id, store.batches.item_ids(batch_id, start=0, stop=-1)


def test_given_20000_requests_committed_out_of_order_when_exported_then_every_line_comes_in_submission_order_with_its_own_messages(  # noqa: E501
        client, redis_url):
    store = Store(client=connect(redis_url))
    agent_id, batch_id, item_ids = _batch(store, 20_000)
    store.blobs.materialize(batch_id, item_ids, start=0)  # as the workers that claimed them would
    order = list(range(len(item_ids)))
    random.Random(7).shuffle(order)
    unfinished = set(order[:50])  # some requests still pending when exported
    for n in order[50:]:
        _commit(store, agent_id, batch_id, item_ids[n], n)

    answer = client.get(f"/v1/messages/batches/{batch_id}/results")

    assert answer.status_code == 200
    assert answer.mimetype == "application/x-ndjson"
    lines = [json.loads(line) for line in answer.get_data(as_text=True).splitlines()]
    assert [line["index"] for line in lines] == list(range(20_000))
    assert [line["batch_item_id"] for line in lines] == item_ids
    for n, line in enumerate(lines):
        if n in unfinished:
            assert (line["status"], line["messages"], line["output_text"]) == ("pending", [], None)
            continue
        assert line["status"] == "succeeded" and line["stop_reason"] == "end_turn"
        assert line["ttft_ns"] == n and line["agent_id"] == agent_id and line["error"] is None
        assert [m["batch_item_id"] for m in line["messages"]] == [item_ids[n]] * 2
        assert [m["content"][0]["text"] for m in line["messages"]] == [f"q{n}", f"a{n}"]
        assert line["output_text"] == f"a{n}"


def test_given_a_cancelled_batch_when_exported_then_unstarted_requests_read_cancelled(client, redis_url):
    store = Store(client=connect(redis_url))
    agent_id, batch_id, item_ids = _batch(store, 3)
    assert store.runs.claim(batch_id=batch_id, item_id=item_ids[1], owner="w", lease_s=60).action == "run"
    _commit(store, agent_id, batch_id, item_ids[1], 1)
    assert client.patch(f"/v1/messages/batches/{batch_id}/cancel").status_code == 200

    lines = [json.loads(line) for line in client.get(f"/v1/messages/batches/{batch_id}/results").get_data(
        as_text=True).splitlines()]

    assert [(line["status"], line["output_text"]) for line in lines] == [
        ("cancelled", None), ("succeeded", "a1"), ("cancelled", None)]


def test_given_an_unknown_batch_when_its_results_are_asked_then_404_with_a_clear_detail(client):
    answer = client.get("/v1/messages/batches/job-nope/results")
    assert answer.status_code == 404
    assert answer.get_json() == {"detail": "Batch 'job-nope' not found."}


def test_given_the_app_when_the_openapi_document_is_fetched_then_it_lists_the_results_route(client):
    assert "/v1/messages/batches/{batch_id}/results" in client.get("/docs/openapi.json").get_json()["paths"]
