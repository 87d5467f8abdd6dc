"""The monitor API and /metrics against real processes: the counts it shows are the queues' and
workers' real state (its batches only the caller's tenant's), dead letters can be requeued and
discarded, and the Prometheus numbers move with a batch run by a separate worker process."""

from __future__ import annotations

import socket
import time

import httpx
from dramatiq.brokers.redis import RedisBroker
from prometheus_client.parser import text_string_to_metric_families

from tests.e2e.conftest import wait_for_status, wait_until
from tests.e2e.test_sdk_end_to_end import _openai_agent
from tests.fakes.model_servers import FakeOpenAIServer
from tests.support.processes import worker_process
from tests.support.tenants import create_key

#: How long the model holds each stream before its first token: long enough to see them open.
HOLD_S = 6.0
IDLE = {"ready": 0, "delayed": 0, "in_flight": 0, "dead": 0}


def _monitor(service, key: str | None = None) -> dict:
    headers = {"Authorization": f"Bearer {key}"} if key else service.auth
    response = httpx.get(f"{service.base_url}/v1/monitor", headers=headers)
    assert response.status_code == 200, response.text
    return response.json()


def _queues(service) -> dict[str, dict]:
    return {queue.pop("name"): queue for queue in _monitor(service)["queues"]}


def _idle(service) -> bool:
    return all({k: q[k] for k in IDLE} == IDLE for q in _queues(service).values())


def test_given_the_worker_stopped_when_a_batch_is_submitted_then_the_monitor_shows_it_waiting_and_every_count_falls_to_zero_once_a_worker_runs(  # noqa: E501
        start_service, redis_url):
    with FakeOpenAIServer(first_token_delay_s=HOLD_S) as model:
        service = start_service(workers=False)
        client = service.client()
        agent = _openai_agent(client, model)
        with worker_process(service.env, log=service.logs / "first-worker.log", threads=4):
            assert wait_until(lambda: len(_monitor(service)["workers"]) == 1, timeout_s=10)
            worker = _monitor(service)["workers"][0]
            assert worker["host"] == socket.gethostname() and worker["threads"] == 4 and worker["pid"] > 0
        assert _monitor(service)["workers"] == []  # a worker that stops cleanly leaves at once

        batch = client.batches.create(requests=[{"agent_id": agent.id, "input": f"q{i}"} for i in range(12)])
        waiting = _queues(service)
        assert waiting["batches"] == {"ready": 1, "delayed": 0, "in_flight": 0, "dead": 0,
                                      "latency_s": waiting["batches"]["latency_s"]}
        assert waiting["items"]["ready"] == 0 and waiting["items"]["latency_s"] is None
        time.sleep(0.3)  # the oldest ready message ages while no worker runs
        assert _queues(service)["batches"]["latency_s"] >= 0.3
        shown = {b["id"]: b for b in _monitor(service)["batches"]}[batch.id]
        assert shown["request_counts"]["pending"] == 12 and shown["eta_s"] is None
        # Another tenant sees the same queues, but not this tenant's batch.
        seen_by_other = _monitor(service, create_key(redis_url, tenant="b"))
        assert seen_by_other["batches"] == seen_by_other["recent_batches"] == []
        assert {q["name"]: q["ready"] for q in seen_by_other["queues"]}["batches"] == 1

        service.add_worker(threads=4)
        assert model.wait_for_open_streams(12, timeout_s=15)
        assert wait_until(lambda: _monitor(service)["models"]["streams_in_flight"] == 12, timeout_s=5), \
            _monitor(service)["workers"]
        busy = _monitor(service)
        assert {q["name"]: q["in_flight"] for q in busy["queues"]}["items"] >= 1
        assert busy["workers"][0]["items_in_flight"] == 12

        assert wait_for_status(client, batch.id, timeout_s=30).status == "completed"
        assert wait_until(lambda: _idle(service), timeout_s=15), _queues(service)
        assert wait_until(lambda: _monitor(service)["models"]["streams_in_flight"] == 0, timeout_s=10)
        done = _monitor(service)
        assert batch.id not in {b["id"] for b in done["batches"]}
        finished = {b["id"]: b for b in done["recent_batches"]}[batch.id]
        assert finished["request_counts"]["succeeded"] == 12 and finished["throughput_per_s"] > 0
        assert sum(minute["finished"] for minute in done["throughput"]) == 12
        assert done["models"]["completed_per_min_5m"] > 0 and done["models"]["ttft_p50_s"] >= HOLD_S


def _dead_letter_start(redis_url: str, batch_id: str) -> None:
    """Fail the batch's start message the way Dramatiq does after its last retry: a consumer
    fetches it and nacks it, which moves it to the dead letters."""
    broker = RedisBroker(url=redis_url)
    consumer = broker.consume("batches", prefetch=1, timeout=100)
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            message = next(consumer)
            if message is None:
                continue
            if message.args[0] == batch_id:
                consumer.nack(message)
                return
            consumer.requeue([message])
        raise AssertionError(f"no start message for {batch_id}")
    finally:
        consumer.close()
        broker.close()


def test_given_dead_letters_when_one_is_requeued_and_one_discarded_then_the_requeued_batch_runs_and_the_other_is_gone(
        start_service, redis_url):
    with FakeOpenAIServer() as model:
        service = start_service(workers=False)
        client = service.client()
        agent = _openai_agent(client, model)
        kept = client.batches.create(requests=[{"agent_id": agent.id, "input": "q"}])
        dropped = client.batches.create(requests=[{"agent_id": agent.id, "input": "q"}])
        _dead_letter_start(redis_url, kept.id)
        _dead_letter_start(redis_url, dropped.id)
        assert _queues(service)["batches"] == {"ready": 0, "delayed": 0, "in_flight": 0, "dead": 2, "latency_s": None}

        letters = httpx.get(f"{service.base_url}/v1/monitor/dead-letters", headers=service.auth,
                            params={"queue": "batches"}).json()
        by_batch = {letter["batch_id"]: letter for letter in letters["dead_letters"]}
        assert set(by_batch) == {kept.id, dropped.id}
        assert by_batch[kept.id]["actor"] == "start_batch" and by_batch[kept.id]["args"] == [kept.id]

        letters_url = f"{service.base_url}/v1/monitor/dead-letters"
        requeue = httpx.post(f"{letters_url}/{by_batch[kept.id]['id']}/requeue", headers=service.auth)
        assert requeue.status_code == 200 and requeue.json() == {"requeued": [by_batch[kept.id]["id"]]}
        discard = httpx.delete(f"{letters_url}/{by_batch[dropped.id]['id']}", headers=service.auth)
        assert discard.status_code == 200 and discard.json() == {"discarded": [by_batch[dropped.id]["id"]]}
        again = httpx.delete(f"{letters_url}/{by_batch[dropped.id]['id']}", headers=service.auth)
        assert again.status_code == 404 and "No dead letter" in again.json()["detail"]
        assert _queues(service)["batches"]["dead"] == 0 and _queues(service)["batches"]["ready"] == 1

        service.add_worker()
        assert wait_for_status(client, kept.id, timeout_s=30).status == "completed"
        assert client.batches.retrieve(dropped.id).status == "running"  # its start is gone, until the sweep


def _scrape(service) -> dict[str, dict[tuple, float]]:
    response = httpx.get(f"{service.base_url}/metrics", headers=service.auth)
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")
    samples: dict[str, dict[tuple, float]] = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = sample.value
    return samples


def test_given_a_separate_worker_process_when_a_batch_runs_then_the_web_metrics_count_its_batch_items_and_timings(
        start_service):
    with FakeOpenAIServer(first_token_delay_s=0.2) as model:
        service = start_service()
        client = service.client()
        agent = _openai_agent(client, model)
        before = _scrape(service)
        batch = client.batches.create(requests=[{"agent_id": agent.id, "input": f"q{i}"} for i in range(5)])
        assert wait_for_status(client, batch.id, timeout_s=30).status == "completed"
        assert wait_until(lambda: _scrape(service)["batchline_batches_finished_total"][(("status", "completed"),)]
                          == before["batchline_batches_finished_total"][(("status", "completed"),)] + 1, timeout_s=10)
        after = _scrape(service)

        def moved(name: str, labels: tuple = ()) -> float:
            return after[name][labels] - before[name][labels]

        assert moved("batchline_batches_created_total") == 1
        assert moved("batchline_items_finished_total", (("stop_reason", "end_turn"),)) == 5
        assert moved("batchline_item_ttft_seconds_count") == 5
        assert moved("batchline_item_ttft_seconds_bucket", (("le", "0.1"),)) == 0
        assert moved("batchline_item_ttft_seconds_bucket", (("le", "+Inf"),)) == 5
        assert moved("batchline_item_ttft_seconds_sum") >= 5 * 0.2
        assert moved("batchline_item_duration_seconds_count") == 5
        assert after["batchline_workers_alive"][()] == 1
        assert after["batchline_queue_messages"][(("queue", "items"), ("state", "dead"))] == 0
        assert set(after["batchline_queue_latency_seconds"]) == {(("queue", q),) for q in ("batches", "items",
                                                                                             "callbacks")}
