"""Idempotency-Key that can't be misused: bound to its request body (another body is a 409),
scoped to the tenant, kept for a setting's time, bounded in length. Real Redis, Flask's client."""

from __future__ import annotations

import json
import threading

import pytest

from app.store import keys


@pytest.fixture
def agent_id(client) -> str:
    return client.post("/v1/agents/", json={"model": "simulated/echo"}).get_json()["id"]


def _post(client, body: dict | str, key: str):
    if isinstance(body, str):
        return client.post("/v1/messages/batches", data=body, content_type="application/json",
                           headers={"Idempotency-Key": key})
    return client.post("/v1/messages/batches", json=body, headers={"Idempotency-Key": key})


def _batches(app) -> int:
    return app.extensions["batchline"].store.client.zcard(keys.BATCHES)


def test_given_a_used_key_when_the_same_body_is_sent_in_another_key_order_then_it_answers_the_same_batch(
        app, client, agent_id):
    body = {"requests": [{"agent_id": agent_id, "input": "x"}], "metadata": {"a": 1, "b": 2}}
    first = _post(client, body, "k")
    reordered = '{"metadata": {"b": 2, "a": 1},  "requests": [{"input": "x", "agent_id": "AGENT"}]}'
    again = _post(client, reordered.replace("AGENT", agent_id), "k")
    assert first.status_code == again.status_code == 200
    assert again.get_json()["id"] == first.get_json()["id"] and _batches(app) == 1


def test_given_a_used_key_when_another_body_is_sent_then_it_is_a_409_that_says_so(app, client, agent_id):
    first = _post(client, {"requests": [{"agent_id": agent_id, "input": "x"}]}, "k-reused").get_json()
    for other in ({"requests": [{"agent_id": agent_id, "input": "y"}]},
                  {"requests": [{"agent_id": agent_id, "input": "x"}], "metadata": {"run": 2}},
                  {"requests": [{"agent_id": agent_id, "input": "x"}], "callback_url": "http://127.0.0.1:9/cb"}):
        refused = _post(client, other, "k-reused")
        assert refused.status_code == 409, other
        detail = refused.get_json()["detail"]
        assert detail.startswith("Idempotency-Key 'k-reused' was already used with a different request body")
        assert first["id"] in detail
        assert refused.headers["x-should-retry"] == "false"
    assert _batches(app) == 1


def test_given_one_key_when_two_tenants_use_it_then_each_gets_its_own_batch(app, client, agent_id):
    store = app.extensions["batchline"].store
    _, other_key = store.api_keys.create(tenant="other", name="b")
    other = app.test_client()
    other.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {other_key}"
    other_agent = other.post("/v1/agents/", json={"model": "simulated/echo"}).get_json()["id"]
    mine = _post(client, {"requests": [{"agent_id": agent_id, "input": "x"}]}, "shared")
    theirs = _post(other, {"requests": [{"agent_id": other_agent, "input": "x"}]}, "shared")
    assert mine.status_code == theirs.status_code == 200
    assert mine.get_json()["id"] != theirs.get_json()["id"] and _batches(app) == 2
    assert _post(other, {"requests": [{"agent_id": other_agent, "input": "x"}]}, "shared").get_json()["id"] \
        == theirs.get_json()["id"]


def test_given_a_key_longer_than_255_characters_when_posted_then_it_is_a_422_that_does_not_echo_it(
        app, client, agent_id):
    key = "k" * 256
    refused = _post(client, {"requests": [{"agent_id": agent_id, "input": "x"}]}, key)
    assert refused.status_code == 422
    assert "Idempotency-Key" in refused.get_json()["detail"] and "255" in refused.get_json()["detail"]
    assert key not in json.dumps(refused.get_json())
    assert _batches(app) == 0
    assert _post(client, {"requests": [{"agent_id": agent_id, "input": "x"}]}, "k" * 255).status_code == 200


@pytest.mark.parametrize(("changes", "ttl_s"), [({}, 24 * 3600), ({"idempotency_ttl_s": 600}, 600)])
def test_given_the_ttl_setting_when_a_key_is_stored_then_it_expires_after_that_long(make_app, changes, ttl_s):
    app = make_app(**changes)
    client = app.test_client()
    agent = client.post("/v1/agents/", json={"model": "simulated/echo"}).get_json()["id"]
    assert _post(client, {"requests": [{"agent_id": agent, "input": "x"}]}, "k-ttl").status_code == 200
    remaining_s = app.extensions["batchline"].store.client.ttl(keys.idempotency("default", "k-ttl"))
    assert ttl_s - 5 <= remaining_s <= ttl_s


@pytest.mark.parametrize("same_body", [True, False])
def test_given_two_creates_with_one_key_racing_when_the_other_commits_first_then_only_its_batch_is_charged(
        make_app, monkeypatch, same_body):
    """The loser of the race answers the winner's batch (or a 409 for another body): no batch of its
    own, so it costs no budget. The race is made certain by letting the other create run to its end
    between this one's charge and its commit; without that, two threads racing were both charged in
    298 of 300 rounds."""
    from app.api import batch_create

    app = make_app(rate_limit_per_minute=0, batch_requests_per_hour=10)
    client = app.test_client()
    agent = client.post("/v1/agents/", json={"model": "simulated/echo"}).get_json()["id"]
    body = {"requests": [{"agent_id": agent, "input": "x"}] * 4}
    other_body = body if same_body else {"requests": [{"agent_id": agent, "input": "y"}] * 4}
    charge, answers = batch_create.charge_batch_requests, []

    def charge_then_let_the_other_commit(count: int) -> None:
        charge(count)  # the real charge, in Redis; then, between it and this create's commit:
        if not answers:
            answers.append(None)
            other = threading.Thread(target=lambda: answers.append(_post(app.test_client(), other_body, "race")))
            other.start()
            other.join()

    monkeypatch.setattr(batch_create, "charge_batch_requests", charge_then_let_the_other_commit)
    first = _post(client, body, "race")

    assert answers[1].status_code == 200 and _batches(app) == 1
    if same_body:
        assert first.status_code == 200 and first.get_json()["id"] == answers[1].get_json()["id"]
    else:
        assert first.status_code == 409
    assert _post(client, {"requests": [{"agent_id": agent, "input": "x"}] * 6}, "next").status_code == 200
