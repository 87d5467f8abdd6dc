"""Bounded memory against poison-pill inputs, on real processes: a 5 MB message in an agent's
history, then 500 requests to that agent, and a batch of sixty 4 MB inputs that do fit the context
window. Every worker process stays under a stated bound (its RSS sampled from /proc), the
batches end, and a request too large for its model ends with a clear error instead of a crash."""

from __future__ import annotations

import httpx

from tests.e2e.conftest import wait_for_status
from tests.fakes.model_servers import FakeOpenAIServer
from tests.support.memory import PeakRss

MB = 1024 * 1024
BUDGET_MB = 400
#: The stated bound: the budget plus the slack of one admitted item and the allocator.
BOUND_BYTES = int(BUDGET_MB * 1.25) * MB


def _agent(service, model: FakeOpenAIServer, *, context_window: int) -> str:
    return httpx.post(f"{service.base_url}/v1/agents/", headers=service.auth, json={
        "model": "openai/gpt-4o-mini", "llm_config": {"model": "gpt-4o-mini", "model_endpoint_type": "openai",
                                                      "model_endpoint": model.base_url,
                                                      "context_window": context_window}}).json()["id"]


def _batch(service, requests: list[dict], *, timeout_s: float) -> dict:
    created = httpx.post(f"{service.base_url}/v1/messages/batches", headers=service.auth,
                         json={"requests": requests}, timeout=120)
    assert created.status_code == 200, created.text
    return wait_for_status(service.client(), created.json()["id"], timeout_s=timeout_s)


def _items(service, batch_id: str) -> list[dict]:
    return httpx.get(f"{service.base_url}/v1/messages/batches/{batch_id}/requests", headers=service.auth,
                     params={"limit": 1000}).json()


def test_given_a_5mb_message_in_history_when_500_requests_run_then_workers_stay_bounded_and_the_batch_ends(
        start_service):
    with FakeOpenAIServer(first_token_delay_s=0.5) as model:
        service = start_service(workers=False, BATCHLINE_WORKER_MEMORY_BUDGET_MB=str(BUDGET_MB))
        worker = service.add_worker(name="worker", threads=8)
        agent_id = _agent(service, model, context_window=128_000)
        with PeakRss(worker.pid) as peak:
            poison = _batch(service, [{"agent_id": agent_id, "input": "x" * (5 * MB)}], timeout_s=60)
            [refused] = _items(service, poison.id)
            many = _batch(service, [{"agent_id": agent_id, "input": f"q{i}"} for i in range(500)], timeout_s=180)
        assert poison.status == "failed" and poison.stop_reason == "error"
        assert "does not fit the agent's context window of 128000 tokens" in refused["error"]
        assert many.status == "completed" and many.request_counts["succeeded"] == 500
        assert len(model.requests) == 500  # the refused request never reached the model
        sent = model.requests[0]["messages"]  # the first requests ran with the 5 MB message still in the window
        assert any("too large for this model's context window" in str(message["content"]) for message in sent)
        assert max(len(str(body)) for body in model.requests) < MB
        assert peak.samples > 10
        print(f"peak worker RSS {peak.peak_bytes / MB:.0f} MB")
        assert peak.peak_bytes < BOUND_BYTES, f"a worker process reached {peak.peak_bytes / MB:.0f} MB"


def test_given_large_inputs_that_fit_the_context_when_they_run_at_once_then_the_memory_budget_holds(start_service):
    with FakeOpenAIServer(first_token_delay_s=1.0) as model:
        service = start_service(workers=False, BATCHLINE_WORKER_MEMORY_BUDGET_MB=str(BUDGET_MB))
        worker = service.add_worker(name="worker", threads=8)
        agent_id = _agent(service, model, context_window=2_000_000)
        with PeakRss(worker.pid) as peak:
            done = _batch(service, [{"agent_id": agent_id, "input": f"{i} " + "y" * (4 * MB)} for i in range(60)],
                          timeout_s=180)
        assert done.status == "completed" and done.request_counts["succeeded"] == 60
        assert len(model.requests) == 60
        print(f"peak worker RSS {peak.peak_bytes / MB:.0f} MB")
        assert peak.peak_bytes < BOUND_BYTES, f"a worker process reached {peak.peak_bytes / MB:.0f} MB"
