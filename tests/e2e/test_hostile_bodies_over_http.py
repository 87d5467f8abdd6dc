"""The hostile-body table of tests/api/test_hostile_bodies.py, sent over real HTTP to the real
web process (gunicorn): what a client can send gets the same clear 4xx there, never a 500, and
nothing is stored; a body over the size ceiling is a 413 that states the limit."""

from __future__ import annotations

import httpx
import pytest
import redis

from tests.api.test_hostile_bodies import AGENT, HOSTILE


@pytest.fixture(scope="module")
def web(shared_service):
    agent_id = httpx.post(f"{shared_service.base_url}/v1/agents/", headers=shared_service.auth,
                          json={"model": "simulated/echo"}).json()["id"]
    return shared_service, agent_id


@pytest.mark.parametrize(("body", "content_type", "status", "words"), [case[1:] for case in HOSTILE],
                         ids=[case[0] for case in HOSTILE])
def test_given_a_hostile_body_over_http_when_a_batch_is_posted_then_a_clear_4xx_and_nothing_is_stored(
        web, body, content_type, status, words):
    service, agent_id = web
    store = redis.Redis.from_url(service.env["REDIS_URL"])
    before = store.zcard("bl:batches")
    headers = {**service.auth, **({"Content-Type": content_type} if content_type else {})}
    response = httpx.post(f"{service.base_url}/v1/messages/batches", content=body.replace(AGENT.encode(),
                          agent_id.encode()), headers=headers, timeout=30)
    assert response.status_code == status, response.text[:300]
    assert words in response.json()["detail"]
    assert len(response.content) < 2000
    assert store.zcard("bl:batches") == before


def test_given_a_body_over_the_ceiling_over_http_when_posted_then_413_states_the_limit(start_service):
    service = start_service(workers=False, BATCHLINE_MAX_BODY_BYTES=str(1024 * 1024))
    response = httpx.post(f"{service.base_url}/v1/messages/batches", content=b"x" * (1024 * 1024 + 1),
                          headers={**service.auth, "Content-Type": "application/json"}, timeout=30)
    assert response.status_code == 413
    assert response.json() == {"detail": "Request body too large: the limit is 1048576 bytes (1 MiB)."}
