"""The callback-attempts and webhook-secret routes over a real Redis, through Flask's test client."""

from __future__ import annotations

import base64

import pytest
from flask.testing import FlaskClient
from pydantic import SecretStr

from app.callbacks import tenant_secret


@pytest.fixture
def batch_id(client) -> str:
    agent_id = client.post("/v1/agents/", json={"model": "simulated/echo"}).get_json()["id"]
    return client.post("/v1/messages/batches", json={
        "requests": [{"agent_id": agent_id, "input": "q"}], "callback_url": "https://hook.example/x",
    }).get_json()["id"]


def test_given_an_unknown_batch_when_its_callback_attempts_are_asked_for_then_404_names_it(client):
    response = client.get("/v1/messages/batches/job-nope/callback-attempts")

    assert response.status_code == 404
    assert response.get_json() == {"detail": "Batch 'job-nope' not found."}


def test_given_a_batch_before_any_delivery_when_its_attempts_are_listed_then_the_list_is_empty(client, batch_id):
    response = client.get(f"/v1/messages/batches/{batch_id}/callback-attempts")

    assert response.status_code == 200 and response.get_json() == {"attempts": []}


def test_given_two_recorded_attempts_when_listed_then_both_come_oldest_first(app, client, batch_id):
    store = app.extensions["batchline"].store
    for status_code, error in ((500, "callback endpoint answered HTTP 500"), (200, None)):
        store.callbacks.record_attempt(batch_id, sent_us=1_764_460_800_000_000, status_code=status_code, error=error,
                                       delivered=error is None, url="https://hook.example/x",
                                       address="93.184.216.34", duration_ms=12, webhook_id=f"msg_{batch_id}")

    attempts = client.get(f"/v1/messages/batches/{batch_id}/callback-attempts").get_json()["attempts"]

    assert [(a["attempt"], a["status_code"], a["error"]) for a in attempts] == [
        (1, 500, "callback endpoint answered HTTP 500"), (2, 200, None)]
    assert all(a["webhook_id"] == f"msg_{batch_id}" and a["address"] == "93.184.216.34" and a["duration_ms"] == 12
               and a["sent_at"] == "2025-11-30T00:00:00.000000Z" for a in attempts)


def test_given_the_openapi_document_when_read_then_the_new_routes_have_their_response_schemas(client):
    document = client.get("/docs/openapi.json").get_json()

    attempts = document["paths"]["/v1/messages/batches/{batch_id}/callback-attempts"]["get"]["responses"]
    assert attempts["200"]["content"]["application/json"]["schema"]["$ref"].endswith("/CallbackAttempts")
    assert "404" in attempts
    schema = document["components"]["schemas"]["CallbackAttempt"]
    assert set(schema["properties"]) == {"attempt", "sent_at", "url", "address", "status_code", "error",
                                         "duration_ms", "webhook_id"}
    secret = document["paths"]["/v1/webhook-secret"]["get"]["responses"]
    assert secret["200"]["content"]["application/json"]["schema"]["$ref"].endswith("/WebhookSecret")


def test_given_no_configured_secret_when_the_caller_asks_for_its_webhook_secret_then_it_gets_its_tenants_own(
        app, client):
    answer = client.get("/v1/webhook-secret")

    assert answer.status_code == 200
    store = app.extensions["batchline"].store
    assert answer.get_json() == {"tenant": "default",
                                 "secret": tenant_secret(store.secrets, "default", configured=None)}
    assert answer.get_json()["secret"].startswith("whsec_")


def test_given_a_configured_secret_when_the_default_tenant_asks_for_its_webhook_secret_then_it_is_that_one(
        make_app):
    configured = "whsec_" + base64.b64encode(b"operator-chosen").decode()
    client = make_app(webhook_secret=SecretStr(configured)).test_client()

    assert client.get("/v1/webhook-secret").get_json() == {"tenant": "default", "secret": configured}


def _client_of(app, tenant: str) -> FlaskClient:
    _, key = app.extensions["batchline"].store.api_keys.create(tenant=tenant, name="test")
    client = FlaskClient(app, app.response_class)
    client.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {key}"
    return client


def test_given_a_key_of_another_tenant_when_it_asks_for_its_webhook_secret_then_it_gets_its_own_not_defaults(
        make_app):
    configured = "whsec_" + base64.b64encode(b"operator-chosen").decode()
    app = make_app(webhook_secret=SecretStr(configured))
    secret = _client_of(app, "tenant-b").get("/v1/webhook-secret").get_json()

    assert secret["tenant"] == "tenant-b"
    assert secret["secret"].startswith("whsec_") and secret["secret"] != configured
    assert app.test_client().get("/v1/webhook-secret").get_json()["secret"] == configured


def test_given_another_tenants_batch_when_its_callback_attempts_are_asked_for_then_404_as_if_unknown(
        app, batch_id):
    response = _client_of(app, "tenant-b").get(f"/v1/messages/batches/{batch_id}/callback-attempts")

    assert response.status_code == 404
    assert response.get_json() == {"detail": f"Batch {batch_id!r} not found."}


@pytest.mark.parametrize(("path", "documented"), [
    ("/v1/messages/batches/job-1/callback-attempts", "/v1/messages/batches/{batch_id}/callback-attempts"),
    ("/v1/webhook-secret", "/v1/webhook-secret")])
def test_given_no_key_when_a_webhook_route_is_called_then_it_is_documented_as_needing_one_and_answers_401(
        anonymous_client, path, documented):
    operation = anonymous_client.get("/docs/openapi.json").get_json()["paths"][documented]["get"]
    response = anonymous_client.get(path)

    assert operation["security"] == [{"bearer": []}] and "401" in operation["responses"]
    assert response.status_code == 401 and response.headers["WWW-Authenticate"].startswith("Bearer")
    assert "whsec_" not in response.get_data(as_text=True)
