"""Per-key rate limits (the `limits` library on the real Redis): calls per minute, batch requests per
hour, 429 with Retry-After, 0 meaning none."""

from __future__ import annotations

import pytest
import redis

from app.api import rate_limits
from app.embedded_redis import free_port


@pytest.fixture
def limited(make_app):
    """An app (and its keyed client) with a limit of 3 calls per minute."""
    app = make_app(rate_limit_per_minute=3)
    return app, app.test_client()


def _agent(client) -> str:
    response = client.post("/v1/agents/", json={"model": "simulated/echo"})
    assert response.status_code == 200, response.get_json()
    return response.get_json()["id"]


def _batch(client, agent_id: str, size: int, **headers: str):
    return client.post("/v1/messages/batches", json={"requests": [{"agent_id": agent_id, "input": "x"}] * size},
                       headers=headers)


def test_given_a_limit_of_3_per_minute_when_a_key_calls_a_4th_time_then_it_gets_429_with_retry_after(limited):
    _, client = limited
    for _ in range(3):
        assert client.get("/v1/messages/batches").status_code == 200
    throttled = client.get("/v1/agents/")
    assert throttled.status_code == 429
    assert "3 calls per minute" in throttled.get_json()["detail"]
    assert "BATCHLINE_RATE_LIMIT_PER_MINUTE" in throttled.get_json()["detail"]
    assert 1 <= int(throttled.headers["Retry-After"]) <= 60


def test_given_one_key_throttled_when_another_key_calls_then_it_is_served(limited):
    app, client = limited
    _, other_key = app.extensions["batchline"].store.api_keys.create(tenant="other", name="b")
    for _ in range(3):
        client.get("/v1/messages/batches")
    assert client.get("/v1/messages/batches").status_code == 429
    other = app.test_client()
    other.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {other_key}"
    assert [other.get("/v1/messages/batches").status_code for _ in range(3)] == [200, 200, 200]
    assert other.get("/v1/messages/batches").status_code == 429


def test_given_a_limit_when_probes_docs_and_callers_without_a_key_call_then_they_are_not_counted(limited):
    app, client = limited
    anonymous = app.test_client()
    anonymous.environ_base.pop("HTTP_AUTHORIZATION", None)
    for _ in range(5):
        assert anonymous.get("/v1/messages/batches").status_code == 401
        assert anonymous.get("/healthz").status_code == 200
        assert anonymous.get("/readyz").status_code == 200
        assert anonymous.get("/docs/openapi.json").status_code == 200
    assert [client.get("/v1/messages/batches").status_code for _ in range(4)] == [200, 200, 200, 429]


def test_given_a_budget_of_10_batch_requests_an_hour_when_batches_are_posted_then_each_costs_its_size(make_app):
    client = make_app(rate_limit_per_minute=0, batch_requests_per_hour=10).test_client()
    agent_id = _agent(client)
    assert _batch(client, agent_id, 4, **{"Idempotency-Key": "first"}).status_code == 200
    assert _batch(client, agent_id, 4).status_code == 200
    throttled = _batch(client, agent_id, 4)
    assert throttled.status_code == 429
    assert "10 batch requests per hour" in throttled.get_json()["detail"]
    assert 1 <= int(throttled.headers["Retry-After"]) <= 3600
    assert _batch(client, agent_id, 2).status_code == 200  # exactly the 10
    assert _batch(client, agent_id, 1).status_code == 429
    # A retry of a stored batch is no new request: it is answered, not counted.
    assert _batch(client, agent_id, 4, **{"Idempotency-Key": "first"}).status_code == 200
    # 0 calls per minute means no limit on calls: this client made well over 3 of them.
    assert client.get("/v1/messages/batches").status_code == 200


def test_given_a_batch_larger_than_the_hourly_budget_when_posted_then_it_is_a_422_naming_requests(make_app):
    client = make_app(batch_requests_per_hour=3).test_client()
    refused = _batch(client, _agent(client), 4)
    assert refused.status_code == 422
    assert refused.get_json()["errors"][0]["loc"] == ["requests"]
    assert "BATCHLINE_BATCH_REQUESTS_PER_HOUR" in refused.get_json()["detail"]


def test_given_limits_of_0_when_a_key_calls_often_and_submits_then_nothing_is_throttled(make_app, redis_url):
    client = make_app(rate_limit_per_minute=0, batch_requests_per_hour=0).test_client()
    agent_id = _agent(client)
    for _ in range(5):
        assert _batch(client, agent_id, 50).status_code == 200
    assert all(client.get("/v1/agents/").status_code == 200 for _ in range(50))
    assert not redis.Redis.from_url(redis_url).keys("bl:ratelimit*")


def test_given_authentication_off_when_a_caller_exceeds_the_limit_then_it_is_throttled_by_address(make_app):
    client = make_app(auth="off", rate_limit_per_minute=2).test_client()
    assert [client.get("/v1/messages/batches").status_code for _ in range(3)] == [200, 200, 429]


def test_given_the_limit_storage_unreachable_when_a_key_calls_then_it_is_503_not_500(make_app):
    app = make_app(rate_limit_per_minute=3)
    # A second limiter over a Redis that is not there: its check fails as the real one would.
    rate_limits.install(app, redis_url=f"redis://127.0.0.1:{free_port()}/0")
    response = app.test_client().get("/v1/messages/batches")
    assert response.status_code == 503 and "Redis" in response.get_json()["detail"]
    assert response.headers["Retry-After"]


def test_given_the_openapi_document_when_read_then_every_keyed_route_documents_429(client):
    paths = client.get("/docs/openapi.json").get_json()["paths"]
    keyed = {path: operations for path, operations in paths.items() if path.startswith(("/v1/", "/metrics"))}
    assert "/v1/messages/batches" in keyed and "/v1/agents/" in keyed
    for path, operations in keyed.items():
        for method, operation in operations.items():
            assert "429" in operation["responses"], f"{method} {path}"
