"""What goes wrong, end to end: provider errors, callback endpoints that fail, batches that
expire, and a worker killed mid-stream. Nothing is lost and nothing is counted twice."""

from __future__ import annotations

import os
import signal
from collections import Counter

import httpx

from tests.e2e.conftest import wait_for_status, wait_until
from tests.e2e.test_sdk_end_to_end import _openai_agent
from tests.fakes.model_servers import FakeOpenAIServer, Reply
from tests.support.queues import wait_for_idle_queues
from tests.support.receiver import CallbackReceiver


def _items(service, batch_id):
    return httpx.get(f"{service.base_url}/v1/messages/batches/{batch_id}/requests", params={"limit": 1000}).json()


def test_given_a_provider_that_keeps_answering_429_when_the_batch_runs_then_items_end_llm_api_error_and_it_fails(
        start_service):
    overloaded = Reply(status=429, retry_after="0", error_message="Rate limit reached for gpt-4o-mini")
    with FakeOpenAIServer(reply=overloaded) as model:
        service = start_service(BATCHLINE_LLM_MAX_ATTEMPTS="3", BATCHLINE_LLM_BACKOFF_BASE_S="0.01")
        client = service.client()
        agent = _openai_agent(client, model)
        batch = client.batches.create(requests=[{"agent_id": agent.id, "input": f"q{i}"} for i in range(4)])
        done = wait_for_status(client, batch.id, timeout_s=30)
        assert done.status == "failed" and done.stop_reason == "llm_api_error"
        assert done.completed_at is not None and done.ttft_ns is None
        assert done.request_counts["errored"] == 4
        assert len(model.requests) == 4 * 3
        for item in _items(service, batch.id):
            assert item["status"] == "errored" and item["stop_reason"] == "llm_api_error"
            assert "429" in item["error"] and "Rate limit reached" in item["error"] and "3 attempts" in item["error"]


def test_given_a_provider_that_fails_twice_then_recovers_when_the_batch_runs_then_it_completes(start_service):
    with FakeOpenAIServer() as model:
        model.script = lambda body, n: Reply(status=503, retry_after="0") if n < 2 else None
        service = start_service(BATCHLINE_LLM_BACKOFF_BASE_S="0.01")
        client = service.client()
        agent = _openai_agent(client, model)
        batch = client.batches.create(requests=[{"agent_id": agent.id, "input": "q"}])
        done = wait_for_status(client, batch.id, timeout_s=30)
        assert done.status == "completed"
        assert len(model.requests) == 3


def test_given_a_callback_endpoint_that_fails_twice_when_the_batch_ends_then_it_is_retried_until_delivered(
        start_service):
    with FakeOpenAIServer() as model, CallbackReceiver(statuses=(500, 502, 200)) as receiver:
        service = start_service()
        client = service.client()
        agent = _openai_agent(client, model)
        batch = client.batches.create(requests=[{"agent_id": agent.id, "input": "q"}], callback_url=receiver.url)
        wait_for_status(client, batch.id, timeout_s=30)
        calls = receiver.wait_for(3, timeout_s=30)
        assert [c.json()["job_id"] for c in calls] == [batch.id] * 3
        assert len({c.headers["webhook-id"] for c in calls}) == 1
        assert wait_until(lambda: client.batches.retrieve(batch.id).callback_status_code == 200, timeout_s=5)
        final = client.batches.retrieve(batch.id)
        assert final.callback_error is None and final.callback_sent_at is not None


def test_given_a_callback_endpoint_that_always_fails_then_the_latest_attempt_is_recorded_and_the_batch_is_done(
        start_service):
    with FakeOpenAIServer() as model, CallbackReceiver(statuses=(500,)) as receiver:
        service = start_service(BATCHLINE_CALLBACK_MAX_ATTEMPTS="2")
        client = service.client()
        agent = _openai_agent(client, model)
        batch = client.batches.create(requests=[{"agent_id": agent.id, "input": "q"}], callback_url=receiver.url)
        assert wait_for_status(client, batch.id, timeout_s=30).status == "completed"
        assert len(receiver.wait_for(2, timeout_s=30)) == 2
        assert wait_until(lambda: client.batches.retrieve(batch.id).callback_status_code == 500, timeout_s=5)
        assert "500" in client.batches.retrieve(batch.id).callback_error
        wait_for_idle_queues(service.env["REDIS_URL"])
        assert len(receiver.received) == 2


def test_given_a_short_completion_window_when_it_passes_then_the_batch_expires_and_its_streams_close(start_service):
    with FakeOpenAIServer(first_token_delay_s=30) as model, CallbackReceiver() as receiver:
        service = start_service(BATCHLINE_COMPLETION_WINDOW_S="2")
        client = service.client()
        agent = _openai_agent(client, model)
        batch = client.batches.create(requests=[{"agent_id": agent.id, "input": f"q{i}"} for i in range(5)],
                                      callback_url=receiver.url)
        assert model.wait_for_open_streams(5, timeout_s=10)
        expired = wait_for_status(client, batch.id, ("expired",), timeout_s=10)
        assert expired.stop_reason is None and expired.completed_at is not None
        assert wait_until(lambda: model.streams_closed_by_client == 5, timeout_s=2)
        assert wait_until(lambda: client.batches.retrieve(batch.id).request_counts["expired"] == 5, timeout_s=5)
        assert {item["status"] for item in _items(service, batch.id)} == {"expired"}
        calls = receiver.wait_for(1, timeout_s=10)
        assert calls[0].json()["status"] == "expired"


def test_given_a_worker_killed_mid_stream_when_another_worker_runs_then_every_request_completes_exactly_once(
        start_service):
    with FakeOpenAIServer(first_token_delay_s=2.0) as model:
        service = start_service(workers=False, BATCHLINE_ITEM_LEASE_S="2", BATCHLINE_WORKER_HEARTBEAT_TIMEOUT_S="3")
        doomed = service.add_worker(name="doomed")
        client = service.client()
        agent = _openai_agent(client, model)
        batch = client.batches.create(requests=[{"agent_id": agent.id, "input": f"q{i}"} for i in range(30)])
        assert model.wait_for_open_streams(30, timeout_s=20)
        os.killpg(doomed.pid, signal.SIGKILL)
        doomed.wait(timeout=10)
        assert wait_until(lambda: model.open_streams == 0, timeout_s=5)

        service.add_worker(name="survivor")
        done = wait_for_status(client, batch.id, timeout_s=90)
        assert done.status == "completed"
        assert done.request_counts["succeeded"] == 30 and done.request_counts["running"] == 0
        messages = list(client.batches.messages.list(batch.id, limit=100))
        per_item = Counter((m.batch_item_id, m.role) for m in messages)
        assert len(per_item) == 60 and set(per_item.values()) == {1}
        assert max(item["attempts"] for item in _items(service, batch.id)) == 2


def test_given_a_worker_stopped_gracefully_mid_stream_when_another_starts_then_it_takes_over_at_once(start_service):
    import time

    with FakeOpenAIServer(first_token_delay_s=3.0) as model:
        service = start_service(workers=False)  # default 30 s leases: a takeover sooner proves the give-back
        leaving = service.add_worker(name="leaving")
        client = service.client()
        agent = _openai_agent(client, model)
        batch = client.batches.create(requests=[{"agent_id": agent.id, "input": f"q{i}"} for i in range(10)])
        assert model.wait_for_open_streams(10, timeout_s=20)
        stopped_at = time.monotonic()
        os.killpg(leaving.pid, signal.SIGTERM)  # as honcho and systemd do: the whole process group
        leaving.wait(timeout=15)
        assert time.monotonic() - stopped_at < 10
        assert model.streams_closed_by_client == 10

        service.add_worker(name="arriving")
        done = wait_for_status(client, batch.id, timeout_s=25)
        assert done.status == "completed" and done.request_counts["succeeded"] == 10
        assert time.monotonic() - stopped_at < 25
        messages = list(client.batches.messages.list(batch.id, limit=100))
        assert len(messages) == 20
