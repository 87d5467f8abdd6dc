"""What a poll of `GET /v1/messages/batches/{id}` costs Redis, on the real redis-server: the key
lookup, the call's count and the batch's read go in one round trip once the process knows the
key, and that shortcut changes nothing that is answered (404s, other tenants, rate limits)."""

from __future__ import annotations

import threading
from typing import Any

import pytest
import redis

from app.store import Store, connect

#: GETs measured per test (after one that makes the process know the key).
POLLS = 20


def _batch(client) -> str:
    agent = client.post("/v1/agents/", json={"model": "simulated/echo"}).get_json()["id"]
    created = client.post("/v1/messages/batches", json={"requests": [{"agent_id": agent, "input": "q"}] * 3})
    assert created.status_code == 200, created.get_json()
    return created.get_json()["id"]


class _RoundTrips:
    """Counts what this thread sends to Redis, a command or a whole pipeline at a time (the test
    client serves a request on the calling thread; other tests' leftover threads do not count)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.count = 0
        thread = threading.get_ident()
        send = redis.connection.AbstractConnection.send_packed_command

        def counting(connection: Any, command: Any, check_health: bool = True) -> None:
            if threading.get_ident() == thread:
                self.count += 1
            send(connection, command, check_health)

        monkeypatch.setattr(redis.connection.AbstractConnection, "send_packed_command", counting)


def test_given_a_key_seen_before_when_it_polls_a_batch_then_each_get_is_one_redis_round_trip(client, monkeypatch):
    batch_id = _batch(client)
    first = client.get(f"/v1/messages/batches/{batch_id}")
    assert first.status_code == 200
    sent = _RoundTrips(monkeypatch)
    answers = [client.get(f"/v1/messages/batches/{batch_id}") for _ in range(POLLS)]
    round_trips = sent.count
    assert all(answer.status_code == 200 and answer.get_json() == first.get_json() for answer in answers)
    assert round_trips <= POLLS, f"{round_trips} round trips for {POLLS} GETs"


def test_given_a_key_seen_before_when_it_gets_a_missing_or_another_tenants_batch_then_404_alike(client, settings):
    own = _batch(client)
    _, other_secret = Store(client=connect(settings.redis_url)).api_keys.create(tenant="acme", name="other")
    other = {"Authorization": f"Bearer {other_secret}"}
    assert client.get("/v1/messages/batches", headers=other).status_code == 200  # the process now knows it

    foreign = client.get(f"/v1/messages/batches/{own}", headers=other)
    missing = client.get("/v1/messages/batches/job-00000000-0000-4000-8000-000000000000", headers=other)

    assert foreign.status_code == missing.status_code == 404
    assert foreign.get_json()["detail"] == f"Batch {own!r} not found."
    assert client.get(f"/v1/messages/batches/{own}").get_json()["id"] == own


def test_given_redis_lost_its_scripts_when_a_known_key_calls_then_the_call_is_still_counted_and_served(
        make_app, redis_url):
    client = make_app(rate_limit_per_minute=3).test_client()
    batch_id = _batch(client)  # 2 calls: the key is known, the limit's script loaded
    redis.Redis.from_url(redis_url).script_flush()
    assert client.get(f"/v1/messages/batches/{batch_id}").status_code == 200
    throttled = client.get(f"/v1/messages/batches/{batch_id}")
    assert throttled.status_code == 429 and throttled.headers["Retry-After"]
