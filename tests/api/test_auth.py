"""Authentication in front of every route: each `/v1` operation of the served OpenAPI document
refuses a missing, malformed, unknown or revoked key with 401 and a Bearer challenge; the probes
and the documents stay open; the monitor opens only when told to; `auth=off` lets callers in as
the default tenant and says so once at start."""

from __future__ import annotations

import logging
import re

import pytest
from flask.testing import FlaskClient

from app.store import Store, connect
from app.tenancy import DEFAULT_TENANT

UNKNOWN_KEY = "bl_" + "x" * 43


def _operations(client: FlaskClient) -> list[tuple[str, str]]:
    """(method, path) of every operation the app documents, path parameters filled in."""
    document = client.get("/docs/openapi.json").get_json()
    return [(method.upper(), re.sub(r"\{[^}]+\}", "x1", path))
            for path, operations in document["paths"].items() for method in operations]


def _v1_operations(client: FlaskClient) -> list[tuple[str, str]]:
    found = [(method, path) for method, path in _operations(client) if path.startswith("/v1")]
    # the document lists the whole API, not a stub
    assert {("POST", "/v1/messages/batches"), ("DELETE", "/v1/agents/x1"), ("GET", "/v1/messages/batches/x1/results"),
            ("POST", "/v1/monitor/dead-letters/x1/requeue")} <= set(found), found
    return found


def _call(client: FlaskClient, method: str, path: str, headers: dict[str, str] | None = None):
    return client.open(path, method=method, headers=headers or {}, json={} if method in ("POST", "PATCH") else None)


def _assert_refused(response, *, detail: str, secret: str | None = None) -> None:
    assert response.status_code == 401, response.get_data(as_text=True)
    assert response.headers["WWW-Authenticate"].startswith("Bearer ")
    body = response.get_json()
    assert list(body) == ["detail"] and detail in body["detail"]
    if secret:
        assert secret not in response.get_data(as_text=True)


def test_given_no_authorization_header_when_any_v1_operation_is_called_then_401_with_a_bearer_challenge(
        client, anonymous_client):
    for method, path in _v1_operations(client):
        _assert_refused(_call(anonymous_client, method, path), detail="Missing API key")


@pytest.mark.parametrize("header", ["Basic dXNlcjpwYXNz", "Bearer", "Bearer    ", "bl_" + "a" * 43, "Token bl_abc"])
def test_given_a_malformed_authorization_header_when_any_v1_operation_is_called_then_401_naming_the_form(
        client, anonymous_client, header):
    for method, path in _v1_operations(client):
        _assert_refused(_call(anonymous_client, method, path, {"Authorization": header}),
                        detail="Malformed Authorization header")


@pytest.mark.parametrize("presented", [UNKNOWN_KEY, "sk-proj-" + "y" * 40, "bl_short"])
def test_given_an_unknown_key_when_any_v1_operation_is_called_then_401_that_does_not_echo_it(
        client, anonymous_client, presented):
    for method, path in _v1_operations(client):
        response = _call(anonymous_client, method, path, {"Authorization": f"Bearer {presented}"})
        _assert_refused(response, detail="Invalid API key", secret=presented)
        assert 'error="invalid_token"' in response.headers["WWW-Authenticate"]


def test_given_a_revoked_key_when_any_v1_operation_is_called_then_401_at_once(client, anonymous_client, settings):
    keys = Store(client=connect(settings.redis_url)).api_keys
    record, secret = keys.create(tenant="acme", name="soon revoked")
    headers = {"Authorization": f"Bearer {secret}"}
    assert _call(anonymous_client, "GET", "/v1/agents/", headers).status_code == 200

    keys.revoke(record.id)

    for method, path in _v1_operations(client):
        _assert_refused(_call(anonymous_client, method, path, headers), detail="Invalid API key", secret=secret)


@pytest.mark.parametrize("path", ["/", "/healthz", "/readyz", "/docs/openapi.json", "/docs/swagger", "/docs/"])
def test_given_no_key_when_a_probe_or_a_document_is_fetched_then_it_answers(anonymous_client, path):
    assert anonymous_client.get(path, follow_redirects=True).status_code == 200


def test_given_the_document_when_read_then_every_v1_operation_declares_the_bearer_scheme(client):
    document = client.get("/docs/openapi.json").get_json()
    assert document["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            if path.startswith("/v1"):
                assert operation.get("security") == [{"bearer": []}], (method, path)


@pytest.mark.parametrize("path", ["/metrics", "/v1/monitor"])
def test_given_the_monitor_is_not_public_when_read_without_a_key_then_401_and_with_the_key_200(
        client, anonymous_client, path):
    _assert_refused(anonymous_client.get(path), detail="Missing API key")
    assert client.get(path).status_code == 200


def test_given_a_public_monitor_when_read_without_a_key_then_only_its_two_read_routes_open(make_app, client):
    public = make_app(monitor_public=True)
    anonymous = FlaskClient(public, public.response_class)

    assert anonymous.get("/metrics").status_code == 200
    assert "queues" in anonymous.get("/v1/monitor").get_json()
    for method, path in _v1_operations(client):
        if (method, path) != ("GET", "/v1/monitor"):
            _assert_refused(_call(anonymous, method, path), detail="Missing API key")
    # a wrong key is still refused: "public" does not mean "any key will do"
    _assert_refused(anonymous.get("/metrics", headers={"Authorization": f"Bearer {UNKNOWN_KEY}"}),
                    detail="Invalid API key")


def test_given_a_key_when_the_tenant_calls_then_the_first_key_is_a_bl_key_of_the_default_tenant(
        client, api_key, settings):
    assert api_key.startswith("bl_")
    created = client.post("/v1/agents/", json={"model": "simulated/echo"}).get_json()
    keys = Store(client=connect(settings.redis_url)).api_keys
    assert keys.authenticate(api_key).tenant == DEFAULT_TENANT
    assert keys.list()[0].last_used_at is not None
    assert created["created_by_id"] == DEFAULT_TENANT


def test_given_auth_off_when_called_without_a_key_then_the_caller_is_the_default_tenant_and_start_warns_once(
        make_app, caplog, settings):
    with caplog.at_level(logging.WARNING, logger="app.api.auth"):
        app = make_app(auth="off")
    warnings = [record for record in caplog.records if record.name == "app.api.auth"]
    assert len(warnings) == 1 and "BATCHLINE_AUTH=off" in warnings[0].getMessage()

    anonymous = FlaskClient(app, app.response_class)
    created = anonymous.post("/v1/agents/", json={"model": "simulated/echo"})
    assert created.status_code == 200 and created.get_json()["created_by_id"] == DEFAULT_TENANT
    assert anonymous.get("/metrics").status_code == 200
    # no key was made: nobody needs one
    assert Store(client=connect(settings.redis_url)).api_keys.count() == 0
