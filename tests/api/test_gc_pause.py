"""A create with a large body is not slowed by the cyclic garbage collector walking its parsed
requests, and the collector is back once the request is answered, whatever the answer."""

from __future__ import annotations

import gc
import json
from collections.abc import Iterator

import pytest

#: Enough requests for a body past GC_PAUSE_MIN_BODY_BYTES (about 1.5 MB).
REQUESTS = 15_000


@pytest.fixture
def collections() -> Iterator[list[int]]:
    started: list[int] = []

    def record(phase: str, info: dict) -> None:
        if phase == "start":
            started.append(info["generation"])

    gc.callbacks.append(record)
    yield started
    gc.callbacks.remove(record)


def test_given_a_large_batch_body_when_it_is_created_then_collections_are_paused_during_it_and_back_after(
        client, collections):
    agent = client.post("/v1/agents/", json={"model": "simulated/echo"}).get_json()["id"]
    body = json.dumps({"requests": [{"agent_id": agent, "input": f"question {i}"} for i in range(REQUESTS)]})
    assert len(body) > 1024 * 1024
    collections.clear()

    answer = client.post("/v1/messages/batches", data=body, content_type="application/json")

    assert answer.status_code == 200
    assert answer.get_json()["request_counts"]["total"] == REQUESTS
    # What runs before the pause (the test client, authentication) may trigger a young
    # collection; without the pause, parsing and validating this body triggered over a hundred.
    assert len(collections) < 5
    assert gc.isenabled()


def test_given_a_large_body_refused_when_answered_then_gc_is_enabled_again(client):
    body = json.dumps({"requests": [{"agent_id": "agent-nope", "input": "x" * 100} for _ in range(REQUESTS)]})

    answer = client.post("/v1/messages/batches", data=body, content_type="application/json")

    assert answer.status_code == 404
    assert gc.isenabled()
