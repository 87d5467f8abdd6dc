"""BATCHLINE_BROKER_URL puts Dramatiq's queues on a Redis of their own (here another database of
the test's redis-server), while batches, items and messages stay on REDIS_URL."""

from __future__ import annotations

import httpx
import redis

from tests.e2e.conftest import wait_for_status
from tests.e2e.test_sdk_end_to_end import _openai_agent
from tests.fakes.model_servers import FakeOpenAIServer


def _queue_url(redis_url: str) -> str:
    return redis_url.rsplit("/", 1)[0] + "/1"


def test_given_a_broker_url_when_a_batch_runs_then_it_completes_and_every_queue_key_lives_on_the_broker_redis(
        start_service, redis_url):
    queue_url = _queue_url(redis_url)
    queue_redis, state_redis = redis.Redis.from_url(queue_url), redis.Redis.from_url(redis_url)
    queue_redis.flushdb()
    with FakeOpenAIServer() as model:
        service = start_service(BATCHLINE_BROKER_URL=queue_url)
        client = service.client()
        agent = _openai_agent(client, model)
        batch = client.batches.create(requests=[{"agent_id": agent.id, "input": f"q{i}"} for i in range(20)])
        done = wait_for_status(client, batch.id, timeout_s=60)
        monitor = httpx.get(f"{service.base_url}/v1/monitor", headers=service.auth, timeout=10).json()
    assert done.status == "completed"
    assert len(list(client.batches.messages.list(batch.id, limit=100).messages)) == 40
    assert not [key for key in state_redis.scan_iter("dramatiq:*")]
    assert queue_redis.exists("dramatiq:__heartbeats__")
    assert not [key for key in queue_redis.scan_iter("bl:*")]
    assert {queue["name"] for queue in monitor["queues"]} >= {"batches", "items", "callbacks"}
