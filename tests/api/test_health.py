"""Probes and the OpenAPI document."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import redis

from app.embedded_redis import free_port


def test_given_redis_up_when_probed_then_both_probes_answer_200(client):
    assert client.get("/healthz").get_json() == {"status": "ok"}
    assert client.get("/readyz").get_json() == {"status": "ready"}


def test_given_redis_down_when_probed_then_readyz_is_503_and_api_calls_are_503_not_500(app, make_app):
    down = make_app(redis_url=f"redis://127.0.0.1:{free_port()}/0").test_client()
    assert down.get("/healthz").status_code == 200
    ready = down.get("/readyz")
    assert ready.status_code == 503 and "Redis" in ready.get_json()["detail"]
    listed = down.get("/v1/messages/batches")
    assert listed.status_code == 503 and "Redis" in listed.get_json()["detail"]


def test_given_the_app_when_the_openapi_document_is_fetched_then_it_lists_every_route(client):
    document = client.get("/docs/openapi.json").get_json()
    assert document["openapi"].startswith("3.1")
    paths = document["paths"]
    for path in ("/v1/messages/batches", "/v1/messages/batches/{batch_id}", "/v1/messages/batches/{batch_id}/cancel",
                 "/v1/messages/batches/{batch_id}/messages", "/v1/messages/batches/{batch_id}/requests",
                 "/v1/agents/", "/v1/agents/{agent_id}", "/v1/agents/{agent_id}/messages"):
        assert path in paths, path
    page = client.get("/docs/swagger")
    assert page.status_code == 200 and b"swagger-ui" in page.data


def test_given_an_unknown_route_when_called_then_404_is_json(client):
    response = client.get("/v1/nothing")
    assert response.status_code == 404 and "detail" in response.get_json()


def test_given_the_root_url_when_fetched_then_it_points_to_the_docs_and_probes_that_answer(client):
    root = client.get("/")
    assert root.status_code == 200
    links = root.get_json()
    assert links["name"] == "Batchline"
    for key in ("docs", "openapi", "health", "ready", "dashboard", "monitor", "metrics"):
        assert client.get(links[key]).status_code == 200, key


def test_given_the_swagger_url_with_a_trailing_slash_when_fetched_then_it_leads_to_the_swagger_page(client):
    page = client.get("/docs/swagger/", follow_redirects=True)
    assert page.status_code == 200 and b"swagger-ui" in page.data and page.request.path == "/docs/swagger"


def _as_a_replica(client: redis.Redis) -> Callable[[], None]:
    client.replicaof("127.0.0.1", str(free_port()))  # its primary is not there
    return lambda: client.replicaof("NO", "ONE")


def _full(client: redis.Redis) -> Callable[[], None]:
    client.config_set("maxmemory", 1)  # with noeviction, as Batchline requires
    return lambda: client.config_set("maxmemory", 0)


@pytest.mark.parametrize("refusing", [_as_a_replica, _full], ids=["read-only during a failover", "maxmemory reached"])
def test_given_redis_refusing_writes_when_a_batch_is_created_or_cancelled_then_503_not_500(client, store, refusing):
    """A plain write is refused with READONLY or OOM; a script's write (Redis 6) with a script
    error that says so."""
    agent = client.post("/v1/agents/", json={"model": "simulated/echo"}).get_json()["id"]
    batch = client.post("/v1/messages/batches", json={"requests": [{"agent_id": agent, "input": "hi"}]}).get_json()
    restore = refusing(store.client)
    try:
        created = client.post("/v1/messages/batches", json={"requests": [{"agent_id": agent, "input": "again"}]})
        cancelled = client.post(f"/v1/messages/batches/{batch['id']}/cancel")
    finally:
        restore()
    for answer in (created, cancelled):
        assert answer.status_code == 503, answer.get_json()
        assert "Redis" in answer.get_json()["detail"] and answer.headers["Retry-After"]
    assert [b["id"] for b in client.get("/v1/messages/batches").get_json()] == [batch["id"]]
