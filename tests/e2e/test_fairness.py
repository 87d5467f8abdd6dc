"""Fairness between batches on real processes (web, two worker processes, the simulated model):
a small batch submitted while a big one runs is served in turn with it, instead of waiting until
the big one is done, and the queue holds only a bounded number of the big batch's chunks."""

from __future__ import annotations

import httpx
import redis

from app.store import keys
from tests.e2e.conftest import wait_for_status, wait_until

BIG, SMALL = 5000, 10
PROCESSES, THREADS = 2, 2


def _post(service, path: str, body: dict) -> dict:
    response = httpx.post(f"{service.base_url}{path}", headers=service.auth, json=body, timeout=60)
    assert response.status_code in (200, 201), response.text
    return response.json()


def _items_queue(service) -> dict:
    response = httpx.get(f"{service.base_url}/v1/monitor", headers=service.auth, timeout=10)
    assert response.status_code == 200, response.text
    return {queue["name"]: queue for queue in response.json()["queues"]}["items"]


def test_given_a_5000_request_batch_running_when_a_10_request_batch_is_submitted_then_it_finishes_first(
        start_service):
    service = start_service(processes=PROCESSES, threads=THREADS, BATCHLINE_SIMULATED_TTFT_MS="100",
                            BATCHLINE_SIMULATED_TOKEN_MS="5")
    client = service.client()
    agent = _post(service, "/v1/agents/", {"model": "simulated/echo"})
    big = _post(service, "/v1/messages/batches",
                {"requests": [{"agent_id": agent["id"], "input": f"big {i}"} for i in range(BIG)]})
    assert wait_until(lambda: client.batches.retrieve(big["id"]).request_counts["succeeded"] > 0, timeout_s=60)

    # Chunks are enqueued as others finish: at most one per worker thread (the default budget) in
    # the batch's chunk ledger, which claim_chunks.lua keeps atomically. The queue can briefly hold
    # one more message per thread: a finishing chunk enqueues its successor before it is acked.
    budget = PROCESSES * THREADS
    assert redis.Redis.from_url(service.env["REDIS_URL"]).hlen(keys.batch_chunks(big["id"])) <= budget
    items = _items_queue(service)
    assert items["ready"] + items["delayed"] + items["in_flight"] <= 2 * budget, items

    small = _post(service, "/v1/messages/batches",
                  {"requests": [{"agent_id": agent["id"], "input": f"small {i}"} for i in range(SMALL)]})
    small_done = wait_for_status(client, small["id"], timeout_s=120)
    big_then = client.batches.retrieve(big["id"]).request_counts
    assert small_done.status == "completed" and small_done.request_counts["succeeded"] == SMALL
    # Served in turn: the big batch had most of its requests still to run (before, it had none left).
    assert big_then["pending"] + big_then["running"] > BIG // 2, big_then

    big_done = wait_for_status(client, big["id"], timeout_s=600)
    assert big_done.status == "completed" and big_done.request_counts["succeeded"] == BIG
    assert small_done.completed_at < big_done.completed_at
