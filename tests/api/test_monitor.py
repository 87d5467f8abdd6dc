"""The monitor routes in-process on a real Redis: the dead letters of a queue requeued or
discarded all at once, validation, the OpenAPI document, Redis outages, and what each tenant
(and a caller without a key) sees and may touch."""

from __future__ import annotations

import time

from dramatiq.brokers.redis import RedisBroker
from flask.testing import FlaskClient

from app.embedded_redis import free_port
from app.schemas.monitor import DeadLetters, Monitor
from tests.support.tenants import client_of


def _batch(client) -> str:
    agent = client.post("/v1/agents/", json={"model": "simulated/echo"}).get_json()
    return client.post("/v1/messages/batches", json={"requests": [{"agent_id": agent["id"], "input": "q"}]}
                       ).get_json()["id"]


def _nack_everything(redis_url: str, queue: str) -> int:
    """What Dramatiq does to a message after its last retry, to every message of the queue."""
    broker = RedisBroker(url=redis_url)
    consumer = broker.consume(queue, prefetch=10, timeout=100)
    nacked, deadline = 0, time.monotonic() + 2
    try:
        while time.monotonic() < deadline:
            message = next(consumer)
            if message is not None:
                consumer.nack(message)
                nacked += 1
    finally:
        consumer.close()
        broker.close()
    return nacked


def _batches_queue(client) -> dict:
    return next(q for q in client.get("/v1/monitor").get_json()["queues"] if q["name"] == "batches")


def test_given_dead_letters_in_a_queue_when_all_are_requeued_then_discarded_then_each_route_lists_what_it_did(
        client, redis_url):
    ids = {_batch(client), _batch(client)}
    assert _nack_everything(redis_url, "batches") == 2
    listing = client.get("/v1/monitor/dead-letters").get_json()
    DeadLetters.model_validate(listing)  # the shape the OpenAPI document promises
    letters = listing["dead_letters"]
    snapshot = Monitor.model_validate(client.get("/v1/monitor").get_json())
    assert {batch.id for batch in snapshot.batches} == ids and snapshot.workers == []
    assert {letter["batch_id"] for letter in letters} == ids
    assert all(letter["failed_at"].endswith("Z") and letter["error"] is None for letter in letters)
    assert _batches_queue(client)["dead"] == 2

    requeued = client.post("/v1/monitor/dead-letters/requeue?queue=batches")
    assert requeued.status_code == 200
    assert sorted(requeued.get_json()["requeued"]) == sorted(letter["id"] for letter in letters)
    assert _batches_queue(client)["dead"] == 0 and _batches_queue(client)["ready"] == 2

    assert _nack_everything(redis_url, "batches") == 2
    discarded = client.delete("/v1/monitor/dead-letters")
    assert discarded.status_code == 200 and len(discarded.get_json()["discarded"]) == 2
    assert _batches_queue(client) | {"latency_s": None} == {"name": "batches", "ready": 0, "delayed": 0,
                                                           "in_flight": 0, "dead": 0, "latency_s": None}
    assert client.delete("/v1/monitor/dead-letters").get_json() == {"discarded": []}


def test_given_bad_dead_letter_queries_when_called_then_they_are_422_or_404_with_a_sentence(client):
    assert client.get("/v1/monitor/dead-letters?queue=default").status_code == 422
    assert client.get("/v1/monitor/dead-letters?limit=0").status_code == 422
    assert client.get("/v1/monitor/dead-letters?colour=red").status_code == 422
    missing = client.post("/v1/monitor/dead-letters/nope/requeue")
    assert missing.status_code == 404 and "No dead letter 'nope'" in missing.get_json()["detail"]
    assert client.delete("/v1/monitor/dead-letters/nope").status_code == 404


def test_given_the_app_when_the_openapi_document_is_fetched_then_it_describes_the_monitor_routes(client):
    paths = client.get("/docs/openapi.json").get_json()["paths"]
    assert set(paths["/v1/monitor"]) == {"get"}
    assert set(paths["/v1/monitor/dead-letters"]) == {"get", "delete"}
    assert set(paths["/v1/monitor/dead-letters/{message_id}"]) == {"delete"}
    assert "post" in paths["/v1/monitor/dead-letters/{message_id}/requeue"]
    assert "post" in paths["/v1/monitor/dead-letters/requeue"]


def test_given_redis_down_when_the_monitor_or_metrics_are_read_then_they_are_503_not_500(app, make_app):
    down = make_app(redis_url=f"redis://127.0.0.1:{free_port()}/0").test_client()
    for path in ("/v1/monitor", "/metrics", "/v1/monitor/dead-letters"):
        response = down.get(path)
        assert response.status_code == 503 and "Redis" in response.get_json()["detail"], path


def test_given_batches_of_two_tenants_when_each_reads_the_monitor_then_it_lists_only_its_own_and_the_same_queues(
        app, client, redis_url):
    other = client_of(app, redis_url, tenant="b")
    mine, theirs = {_batch(client), _batch(client)}, {_batch(other)}
    seen = Monitor.model_validate(client.get("/v1/monitor").get_json())
    seen_by_other = Monitor.model_validate(other.get("/v1/monitor").get_json())
    assert {batch.id for batch in seen.batches + seen.recent_batches} == mine
    assert {batch.id for batch in seen_by_other.batches + seen_by_other.recent_batches} == theirs
    # Queue figures are the fleet's: both tenants' three start messages wait in one queue.
    assert [q.ready for q in seen.queues] == [q.ready for q in seen_by_other.queues] and seen.queues[0].ready == 3


def test_given_a_public_monitor_when_read_without_a_key_then_it_shows_fleet_figures_and_no_batch(
        make_app, client, anonymous_client, redis_url):
    batch_id = _batch(client)
    assert anonymous_client.get("/v1/monitor").status_code == 401
    public = make_app(monitor_public=True)
    anonymous = FlaskClient(public, public.response_class)
    snapshot = anonymous.get("/v1/monitor")
    assert snapshot.status_code == 200
    shown = Monitor.model_validate(snapshot.get_json())
    assert shown.batches == [] and shown.recent_batches == [] and shown.queues[0].ready == 1
    assert batch_id not in snapshot.get_data(as_text=True)
    # Public opens reading the snapshot and the metrics, nothing else.
    for method, path in (("GET", "/v1/monitor/dead-letters"), ("DELETE", "/v1/monitor/dead-letters"),
                         ("POST", "/v1/monitor/dead-letters/requeue"), ("GET", "/v1/messages/batches")):
        assert anonymous.open(path, method=method).status_code == 401, path


def test_given_metrics_when_scraped_with_and_without_a_key_then_they_need_one_unless_public_and_name_no_batch(
        make_app, client, anonymous_client, api_key, redis_url):
    agent = client.post("/v1/agents/", json={"model": "simulated/echo"}).get_json()
    batch_id = client.post("/v1/messages/batches", json={"requests": [
        {"agent_id": agent["id"], "input": "a prompt that must stay private"}]}).get_json()["id"]
    refused = anonymous_client.get("/metrics")
    assert refused.status_code == 401 and refused.headers["WWW-Authenticate"].startswith("Bearer")
    scraped = client.get("/metrics").get_data(as_text=True)
    assert "batchline_batches_created_total 1.0" in scraped
    public = make_app(monitor_public=True)
    opened = FlaskClient(public, public.response_class).get("/metrics")
    assert opened.status_code == 200
    for text in (scraped, opened.get_data(as_text=True)):
        for secret in (batch_id, agent["id"], "must stay private", api_key):
            assert secret not in text


def test_given_dead_letters_of_two_tenants_when_each_lists_requeues_and_discards_then_it_reaches_only_its_own(
        app, client, redis_url):
    other = client_of(app, redis_url, tenant="b")
    mine, theirs = _batch(client), _batch(other)
    assert _nack_everything(redis_url, "batches") == 2
    letters = {letter["batch_id"]: letter["id"] for letter in
               client.get("/v1/monitor/dead-letters").get_json()["dead_letters"]}
    assert set(letters) == {mine}
    listed = other.get("/v1/monitor/dead-letters").get_json()["dead_letters"]
    assert [letter["batch_id"] for letter in listed] == [theirs]
    my_letter, their_letter = letters[mine], listed[0]["id"]

    for method, path in (("POST", f"/v1/monitor/dead-letters/{my_letter}/requeue"),
                         ("DELETE", f"/v1/monitor/dead-letters/{my_letter}")):
        refused = other.open(path, method=method)
        assert refused.status_code == 404 and mine not in refused.get_data(as_text=True), path
    assert other.post("/v1/monitor/dead-letters/requeue").get_json() == {"requeued": [their_letter]}
    assert _batches_queue(client)["dead"] == 1  # mine is still there
    assert client.delete("/v1/monitor/dead-letters").get_json() == {"discarded": [my_letter]}
    assert _batches_queue(client)["dead"] == 0 and _batches_queue(client)["ready"] == 1
