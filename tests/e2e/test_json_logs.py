"""BATCHLINE_LOG_FORMAT=json: the real web (gunicorn, access log on) and the real worker as the
Procfile runs it (batchline-worker over dramatiq) write only JSON lines, and the lines about a
batch or an item carry its ids."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path
from typing import Any

import httpx

from tests.e2e.conftest import wait_for_status, wait_until
from tests.e2e.test_sdk_end_to_end import _openai_agent
from tests.fakes.model_servers import FakeOpenAIServer, Reply
from tests.support.memory import children
from tests.support.processes import BIN, _wait_for_log, spawn, stop


def _script(body: dict, n: int) -> Reply | None:
    text = json.dumps(body["messages"][-1])  # the request's own input, not the agent's history
    if "refuse me" in text:
        return Reply(status=400, error_message="This request is refused by the fake model")
    if "hold me" in text:
        return Reply(first_token_delay_s=30)
    return None


def _json_lines(path: Path) -> list[dict[str, Any]]:
    lines = [line for line in path.read_text().splitlines() if line.strip()]
    assert lines, f"{path.name} is empty"
    parsed = []
    for line in lines:
        try:
            parsed.append(json.loads(line))
        except json.JSONDecodeError:
            raise AssertionError(f"{path.name}: not a JSON line: {line!r}") from None
    assert all({"time", "level", "logger", "message"} <= set(entry) for entry in parsed)
    return parsed


def test_given_json_log_format_when_batches_run_fail_and_are_cancelled_then_every_line_is_json_and_carries_the_ids(
        start_service, tmp_path):
    with FakeOpenAIServer(script=_script) as model:
        service = start_service(workers=False, BATCHLINE_LOG_FORMAT="json", GUNICORN_CMD_ARGS="--access-logfile -")
        worker_log = tmp_path / "worker.log"
        worker = spawn([str(BIN / "batchline-worker"), "--processes", "1", "--threads", "4"], env=service.env,
                       cwd=tmp_path, log=worker_log)
        try:
            _wait_for_log(worker_log, "Worker process is ready", count=1, process=worker)
            client = service.client()
            agent = _openai_agent(client, model)
            batch = client.batches.create(requests=[
                {"agent_id": agent.id, "input": text} for text in ("fine", "refuse me", "fine too")])
            assert wait_for_status(client, batch.id, timeout_s=60).status == "completed"
            held = client.batches.create(requests=[{"agent_id": agent.id, "input": "hold me"}])
            assert model.wait_for_open_streams(1, timeout_s=20)
            client.batches.cancel(held.id)
            assert wait_until(lambda: client.batches.retrieve(held.id).request_counts["running"] == 0, timeout_s=20)
            batch_url = f"{service.base_url}/v1/messages/batches/{batch.id}"
            assert httpx.get(f"{batch_url}/results", headers=service.auth).status_code == 200
            refused = [item for item in httpx.get(f"{batch_url}/requests", headers=service.auth).json()
                       if item["status"] == "errored"]
            # a dramatiq process killed: the supervisor's line about it is JSON too
            dramatiq_main = children(worker.pid)[0]
            os.kill(dramatiq_main, signal.SIGKILL)
            assert wait_until(lambda: "without being asked to stop" in worker_log.read_text(), timeout_s=20)
        finally:
            stop(worker)

    web, workers = _json_lines(tmp_path / "web.log"), _json_lines(worker_log)
    assert len(refused) == 1
    about_refused = [entry for entry in workers if refused[0]["id"] in entry["message"]]
    assert about_refused and all(entry["item_id"] == refused[0]["id"] and entry["batch_id"] == batch.id
                                 for entry in about_refused)
    finished = [entry for entry in workers if entry["message"].startswith(f"Batch {batch.id} completed")]
    assert finished and finished[0]["batch_id"] == batch.id
    cancelled = [entry for entry in web if entry["message"].startswith(f"Batch {held.id} cancelled")]
    assert cancelled and cancelled[0]["batch_id"] == held.id
    assert any(entry["logger"] == "gunicorn.access" and f"/v1/messages/batches/{batch.id}/results" in entry["message"]
               for entry in web)
    assert any("Booting worker" in entry["message"] for entry in web)  # gunicorn's own lines too
    assert any("is booting up" in entry["message"] for entry in workers)  # dramatiq's main process too
    assert any(entry["logger"] == "batchline.worker" and entry["level"] == "WARNING" for entry in workers)
