"""Fleet-wide model limits (BATCHLINE_MODEL_LIMITS) across real worker processes, against the
fake OpenAI streaming server: the stream limit holds over the whole fleet, a 429 with Retry-After
pauses the model for every process, and waiting items say so in `GET .../requests`."""

from __future__ import annotations

import json

import httpx
import redis

from app.store import keys
from tests.e2e.conftest import wait_for_status, wait_until
from tests.e2e.test_sdk_end_to_end import _openai_agent
from tests.fakes.model_servers import FakeOpenAIServer, Reply

STREAM_LIMIT = 5
REQUESTS = 60
PAUSE_S = 2


def _items(service, batch_id: str) -> list[dict]:
    response = httpx.get(f"{service.base_url}/v1/messages/batches/{batch_id}/requests", params={"limit": 100},
                         headers=service.auth, timeout=10)
    response.raise_for_status()
    return response.json()


def _owners(redis_url: str, items: list[dict]) -> set[str]:
    """The worker processes (lease owners) that ran the items."""
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    return {client.hget(keys.item(item["id"]), "lease_owner") for item in items}


def test_given_a_limit_of_5_streams_and_3_worker_processes_when_60_requests_run_then_the_provider_never_sees_more_than_5_open_streams(  # noqa: E501
        start_service, redis_url):
    with FakeOpenAIServer(first_token_delay_s=0.2) as model:
        service = start_service(processes=3, threads=4, BATCHLINE_CHUNK_SIZE="4", BATCHLINE_MODEL_LIMITS=json.dumps(
            {"openai/gpt-4o-mini": {"max_streams": STREAM_LIMIT}}))
        client = service.client()
        agent = _openai_agent(client, model)
        batch = client.batches.create(requests=[{"agent_id": agent.id, "input": f"q{i}"} for i in range(REQUESTS)])
        shown_waiting = wait_until(lambda: any(item.get("waiting") == "model_capacity"
                                               for item in _items(service, batch.id)), timeout_s=30)
        done = wait_for_status(client, batch.id, timeout_s=120)
        items = _items(service, batch.id)

    assert model.max_open_streams == STREAM_LIMIT  # reached, never passed
    assert done.status == "completed"
    assert done.request_counts["succeeded"] == REQUESTS
    assert shown_waiting
    assert all(item["waiting"] is None for item in items)
    assert len(_owners(redis_url, items)) >= 2  # the limit held across processes, not within one


def test_given_two_worker_processes_when_the_provider_answers_a_429_with_retry_after_2_then_no_request_reaches_it_until_the_pause_ends(  # noqa: E501
        start_service, redis_url):
    def first_is_refused(body: dict, n: int) -> Reply | None:
        return Reply(status=429, retry_after=str(PAUSE_S)) if n == 0 else None

    # One stream at a time: no call can be on its way to the provider when the 429 arrives, so
    # every later request must come after the pause.
    with FakeOpenAIServer(first_token_delay_s=0.05, script=first_is_refused) as model:
        service = start_service(processes=2, threads=4, BATCHLINE_CHUNK_SIZE="1", BATCHLINE_MODEL_LIMITS=json.dumps(
            {"openai/*": {"max_streams": 1}}))
        client = service.client()
        agent = _openai_agent(client, model)
        batch = client.batches.create(requests=[{"agent_id": agent.id, "input": f"q{i}"} for i in range(8)])
        done = wait_for_status(client, batch.id, timeout_s=60)
        items = _items(service, batch.id)
        times = model.request_times

    assert done.status == "completed"
    assert done.request_counts["succeeded"] == 8
    assert len(times) == 9  # the refused call was retried once
    refused_at = times[0]
    early = [round(at - refused_at, 3) for at in times[1:] if at < refused_at + PAUSE_S]
    assert early == [], f"requests reached the provider during its pause, at +{early} s"
    assert len(_owners(redis_url, items)) == 2  # both processes ran items, and both waited
