"""The logs of a normal run read as one clear line per event that matters: a worker that starts
with work queued, a callback target that fails once, a cancel, a Ctrl-C mid-batch and the restart
after it print no ERROR and no traceback, and batch created, finished (with counts) and cancelled
each get their line."""

from __future__ import annotations

import os
import re
import signal

from tests.e2e.conftest import wait_for_status, wait_until
from tests.e2e.test_sdk_end_to_end import _openai_agent
from tests.fakes.model_servers import FakeOpenAIServer
from tests.support.receiver import CallbackReceiver

ALARMING = re.compile(r"Traceback|\bERROR\b|\bCRITICAL\b|RuntimeWarning|Exception")


def test_given_a_normal_run_with_restarts_a_cancel_and_a_failing_callback_then_the_logs_are_quiet_and_clear(
        start_service):
    with FakeOpenAIServer(first_token_delay_s=1.0) as model, CallbackReceiver(statuses=(500, 200)) as receiver:
        service = start_service(workers=False)
        client = service.client()
        agent = _openai_agent(client, model)

        queued = client.batches.create(requests=[{"agent_id": agent.id, "input": f"q{i}"} for i in range(10)],
                                       callback_url=receiver.url)
        first = service.add_worker(name="first")  # starts with work already queued
        assert wait_for_status(client, queued.id, timeout_s=30).status == "completed"
        assert len(receiver.wait_for(2, timeout_s=30)) == 2  # one failed attempt, then delivered

        cancelled = client.batches.create(requests=[{"agent_id": agent.id, "input": f"c{i}"} for i in range(10)])
        assert model.wait_for_open_streams(10, timeout_s=20)
        client.batches.cancel(cancelled.id)
        assert wait_until(lambda: client.batches.retrieve(cancelled.id).request_counts["running"] == 0, timeout_s=10)

        interrupted = client.batches.create(requests=[{"agent_id": agent.id, "input": f"i{i}"} for i in range(20)])
        assert model.wait_for_open_streams(20, timeout_s=20)
        os.killpg(first.pid, signal.SIGINT)  # Ctrl-C in the terminal: the whole process group
        first.wait(timeout=20)
        service.add_worker(name="second")
        assert wait_for_status(client, interrupted.id, timeout_s=60).status == "completed"

    logs = {path.name: path.read_text() for path in service.logs.glob("*.log")}
    assert set(logs) >= {"web.log", "first.log", "second.log"}
    for name, text in logs.items():
        alarming = [line for line in text.splitlines() if ALARMING.search(line)]
        assert not alarming, f"{name}: {alarming[:5]}"
    web, workers = logs["web.log"], logs["first.log"] + logs["second.log"]
    assert f"Batch {queued.id} created with 10 requests" in web
    assert f"Batch {cancelled.id} cancelled with 10 requests still running" in web
    assert f"Batch {queued.id} completed: 10 succeeded" in workers
    assert f"Batch {interrupted.id} completed: 20 succeeded" in workers
    assert workers.count(f"Callback of batch {queued.id} failed: callback endpoint answered HTTP 500") == 1
    assert "HTTP Request:" not in workers  # no line per model call
