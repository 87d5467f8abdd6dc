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
    return httpx.get(f"{service.base_url}/v1/messages/batches/{batch_id}/requests", headers=service.auth,
                     params={"limit": 1000}).json()


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
        service = start_service(BATCHLINE_COMPLETION_WINDOW_S="2", BATCHLINE_SWEEP_INTERVAL_S="0.5")
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


def _answer_fast_if(prefix: str, *, slow_s: float):
    """A script for the fake model: requests whose input starts with `prefix` answer at once,
    the others only after `slow_s`."""

    def script(body, n):
        text = body["messages"][-1]["content"]
        return Reply(first_token_delay_s=0.05 if str(text).startswith(prefix) else slow_s)

    return script


def test_given_a_worker_killed_with_half_the_items_committed_when_another_runs_then_none_is_doubled(start_service):
    with FakeOpenAIServer() as model:
        model.script = _answer_fast_if("fast", slow_s=3.0)
        service = start_service(workers=False, BATCHLINE_ITEM_LEASE_S="2", BATCHLINE_WORKER_HEARTBEAT_TIMEOUT_S="3")
        doomed = service.add_worker(name="doomed")
        client = service.client()
        agent = _openai_agent(client, model)
        inputs = [f"fast {i}" for i in range(15)] + [f"slow {i}" for i in range(15)]
        batch = client.batches.create(requests=[{"agent_id": agent.id, "input": text} for text in inputs])
        assert wait_until(lambda: client.batches.retrieve(batch.id).request_counts["succeeded"] == 15, timeout_s=20)
        assert model.open_streams == 15  # the slow half is mid-stream
        os.killpg(doomed.pid, signal.SIGKILL)
        doomed.wait(timeout=10)

        service.add_worker(name="survivor")
        done = wait_for_status(client, batch.id, timeout_s=90)
        assert done.status == "completed" and done.request_counts["succeeded"] == 30
        messages = list(client.batches.messages.list(batch.id, limit=100))
        per_item = Counter((m.batch_item_id, m.role) for m in messages)
        assert len(per_item) == 60 and set(per_item.values()) == {1}
        attempts = Counter(item["attempts"] for item in _items(service, batch.id))
        assert attempts == {1: 15, 2: 15}  # committed items were never run again
        assert len(model.requests) == 15 + 15 * 2


def test_given_a_stalled_owner_when_its_lease_lapses_and_it_resumes_then_every_item_is_recorded_once(start_service):
    with FakeOpenAIServer(first_token_delay_s=3.0) as model:
        service = start_service(workers=False, BATCHLINE_ITEM_LEASE_S="2", BATCHLINE_WORKER_HEARTBEAT_TIMEOUT_S="3")
        stalled = service.add_worker(name="stalled")
        client = service.client()
        agent = _openai_agent(client, model)
        batch = client.batches.create(requests=[{"agent_id": agent.id, "input": f"q{i}"} for i in range(10)])
        assert model.wait_for_open_streams(10, timeout_s=20)
        os.killpg(stalled.pid, signal.SIGSTOP)
        try:
            service.add_worker(name="takeover")
            # the stalled owner's leases lapse, its heartbeat stops, its chunk goes to the new worker
            assert wait_until(lambda: len(model.requests) == 20, timeout_s=30), len(model.requests)
        finally:
            os.killpg(stalled.pid, signal.SIGCONT)
        done = wait_for_status(client, batch.id, timeout_s=60)
        assert done.status == "completed" and done.request_counts["succeeded"] == 10
        assert done.request_counts["running"] == 0 and done.request_counts["pending"] == 0
        assert wait_until(lambda: model.open_streams == 0, timeout_s=10)
        messages = list(client.batches.messages.list(batch.id, limit=100))
        per_item = Counter((m.batch_item_id, m.role) for m in messages)
        assert len(per_item) == 20 and set(per_item.values()) == {1}


def test_given_a_cap_on_streams_when_more_requests_run_then_a_worker_never_holds_more_open(start_service):
    with FakeOpenAIServer(first_token_delay_s=0.5) as model:
        service = start_service(BATCHLINE_WORKER_MAX_STREAMS="5")
        client = service.client()
        agent = _openai_agent(client, model)
        batch = client.batches.create(requests=[{"agent_id": agent.id, "input": f"q{i}"} for i in range(20)])
        assert wait_for_status(client, batch.id, timeout_s=30).status == "completed"
        assert model.max_open_streams == 5


def test_given_some_items_done_when_the_window_passes_then_only_the_unfinished_ones_expire(start_service):
    with FakeOpenAIServer() as model, CallbackReceiver() as receiver:
        model.script = _answer_fast_if("fast", slow_s=30.0)
        service = start_service(BATCHLINE_COMPLETION_WINDOW_S="3", BATCHLINE_SWEEP_INTERVAL_S="0.5")
        client = service.client()
        agent = _openai_agent(client, model)
        inputs = [f"fast {i}" for i in range(4)] + [f"slow {i}" for i in range(6)]
        batch = client.batches.create(requests=[{"agent_id": agent.id, "input": text} for text in inputs],
                                      callback_url=receiver.url)
        assert wait_until(lambda: client.batches.retrieve(batch.id).request_counts["succeeded"] == 4, timeout_s=10)
        expired = wait_for_status(client, batch.id, ("expired",), timeout_s=10)
        assert wait_until(lambda: client.batches.retrieve(batch.id).request_counts["expired"] == 6, timeout_s=5)
        counts = client.batches.retrieve(batch.id).request_counts
        assert counts["succeeded"] == 4 and counts["running"] == 0 and counts["pending"] == 0
        by_status = Counter(item["status"] for item in _items(service, batch.id))
        assert by_status == {"succeeded": 4, "expired": 6}
        assert expired.stop_reason is None
        assert receiver.wait_for(1, timeout_s=10)[0].json()["request_counts"]["succeeded"] == 4
