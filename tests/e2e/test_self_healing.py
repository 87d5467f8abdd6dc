"""No batch is stranded, whatever fails, on real processes: Redis killed and started again
mid-batch (web and worker as separate processes on an append-only Redis), and every Dramatiq
message deleted mid-batch. Each batch completes, every request is answered exactly once, and the
web answers 503 (never 500) while Redis is away."""

from __future__ import annotations

import time
from collections import Counter

import httpx
import pytest
import redis

from tests.e2e.conftest import wait_for_status, wait_until
from tests.e2e.test_sdk_end_to_end import _openai_agent
from tests.fakes.model_servers import FakeOpenAIServer
from tests.support.redis_server import RestartableRedis

SWEEP_S = 2.0
FAST_RECOVERY = {"BATCHLINE_SWEEP_INTERVAL_S": str(SWEEP_S), "BATCHLINE_ITEM_LEASE_S": "3",
                 "BATCHLINE_WORKER_HEARTBEAT_TIMEOUT_S": "4"}


@pytest.fixture
def own_redis(tmp_path):
    server = RestartableRedis(directory=tmp_path / "redis").start()
    yield server
    server.stop()


def _answered_once(client, batch_id: str, requests: int) -> None:
    messages = list(client.batches.messages.list(batch_id, limit=100))
    per_item = Counter((message.batch_item_id, message.role) for message in messages)
    assert len(per_item) == 2 * requests and set(per_item.values()) == {1}, per_item.most_common(3)


def test_given_redis_killed_and_restarted_mid_batch_when_it_returns_then_the_batch_completes_exactly_once(
        start_service, own_redis):
    with FakeOpenAIServer(first_token_delay_s=2.0) as model:
        service = start_service(on_redis=own_redis.url, **FAST_RECOVERY)
        client = service.client()
        agent = _openai_agent(client, model)
        batch = client.batches.create(requests=[{"agent_id": agent.id, "input": f"q{i}"} for i in range(40)])
        assert model.wait_for_open_streams(40, timeout_s=20)

        own_redis.kill()
        answers = Counter()
        down_until = time.monotonic() + 2.0
        while time.monotonic() < down_until:
            for response in (httpx.get(f"{service.base_url}/v1/messages/batches/{batch.id}", headers=service.auth,
                                       timeout=5),
                             httpx.post(f"{service.base_url}/v1/messages/batches", headers=service.auth, timeout=5,
                                        json={"requests": [{"agent_id": agent.id, "input": "during"}]})):
                answers[response.status_code] += 1
                assert response.status_code == 503, response.text
                assert response.headers["Retry-After"]
            time.sleep(0.1)
        own_redis.start()

        done = wait_for_status(client, batch.id, timeout_s=90)
        assert done.status == "completed"
        assert done.request_counts["succeeded"] == 40 and done.request_counts["running"] == 0
        _answered_once(client, batch.id, 40)
        assert answers[503] >= 4
    logs = {path.name: path.read_text() for path in service.logs.glob("*.log")}
    for name, text in logs.items():
        assert "Traceback" not in text, f"{name}: {text[text.index('Traceback') - 500:][:2000]}"
        assert text.count("Redis is unreachable") <= 2, name  # once per process (and a reconnect at most)
    assert "Redis is reachable again" in logs["worker.log"]


def test_given_every_dramatiq_message_deleted_mid_batch_then_the_batch_completes_within_two_sweeps(
        start_service):
    with FakeOpenAIServer(first_token_delay_s=0.5) as model:
        # Several chunks in the queue (the default budget is one per thread): the purge loses some.
        service = start_service(threads=1, BATCHLINE_CHUNK_SIZE="5", BATCHLINE_CHUNKS_IN_FLIGHT_PER_BATCH="4",
                                **FAST_RECOVERY)
        client = service.client()
        agent = _openai_agent(client, model)
        batch = client.batches.create(requests=[{"agent_id": agent.id, "input": f"q{i}"} for i in range(40)])
        assert model.wait_for_open_streams(5, timeout_s=20)
        store = redis.Redis.from_url(service.env["REDIS_URL"], decode_responses=True)
        purged = [key for key in store.scan_iter(match="dramatiq:*") if "__heartbeats__" not in key]
        assert purged
        store.delete(*purged)  # a queue purged by hand, a failover that lost the last writes
        purged_at = time.monotonic()

        assert wait_until(lambda: int(store.hget("bl:sweep:totals", "chunks_requeued") or 0) > 0,
                          timeout_s=2 * SWEEP_S + 1)
        assert time.monotonic() - purged_at <= 2 * SWEEP_S + 1
        done = wait_for_status(client, batch.id, timeout_s=60)
        assert done.status == "completed" and done.request_counts["succeeded"] == 40
        _answered_once(client, batch.id, 40)
