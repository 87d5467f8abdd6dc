"""A running installation upgrades: batches stored before request blobs (one hash per item, its
request in a `request` field, no `blob_size` on the batch) still run, list and export."""

from __future__ import annotations

from app.schemas.agents import CreateAgent
from app.schemas.batches import LettaBatchRequest
from app.store import Store, keys
from tests.actors.test_runtime import make_runtime  # noqa: F401  (a fixture)
from tests.support.runtime import run_chunk


def _legacy_batch(store: Store, requests: list[LettaBatchRequest]) -> tuple[str, list[str]]:
    """Store a batch, then rewrite it exactly as the version before blobs stored it."""
    batch_id, _ = store.batches.create(requests=requests, callback_url=None, metadata=None, completion_window_s=3600,
                                       blob_size=2)
    item_ids = store.batches.item_ids(batch_id, start=0, stop=-1)
    store.client.hdel(keys.batch(batch_id), "blob_size")
    store.client.delete(*[keys.batch_requests(batch_id, number) for number in range(len(requests))])
    for index, (item_id, request) in enumerate(zip(item_ids, requests, strict=True)):
        store.client.hset(keys.item(item_id), mapping={
            "id": item_id, "batch_id": batch_id, "agent_id": request.agent_id, "idx": index, "status": "pending",
            "request": request.model_dump_json(exclude_none=True)})
    return batch_id, item_ids


def test_given_a_batch_stored_before_blobs_when_a_worker_runs_it_then_every_request_succeeds_and_reads_as_before(
        store, make_runtime):  # noqa: F811
    agent = store.agents.create(CreateAgent(model="simulated/echo"))
    requests = [LettaBatchRequest(agent_id=agent["id"], input=f"legacy {i}") for i in range(3)]
    batch_id, item_ids = _legacy_batch(store, requests)
    runtime, _ = make_runtime()
    assert [item["status"] for item in store.batches.items_page(
        batch_id, after=None, before=None, limit=10, order="asc")] == ["pending"] * 3

    run_chunk(runtime, batch_id, 0, 2)

    assert store.batches.get(batch_id)["request_counts"]["succeeded"] == 3
    listed = store.batches.items_page(batch_id, after=None, before=None, limit=10, order="asc")
    assert [(item["id"], item["index"], item["status"]) for item in listed] == [
        (item_id, index, "succeeded") for index, item_id in enumerate(item_ids)]
    exported = list(store.results.stream(batch_id))
    assert [line["output_text"] for line in exported] == [f"echo: legacy {i}" for i in range(3)]
