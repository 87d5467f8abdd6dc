"""The `batchline` console script, run as a user runs it (`.venv/bin/batchline` in a subprocess)
against a real service (gunicorn + dramatiq on the test's redis-server, the simulated model)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import httpx

from app.embedded_redis import free_port
from tests.e2e.conftest import Service
from tests.support.processes import REPO
from tests.support.tenants import create_key

BATCHLINE = Path(sys.executable).parent / "batchline"


def run_cli(*args: str, service: Service | None = None, url: str | None = None, timeout_s: float = 120,
            **env: str) -> subprocess.CompletedProcess[str]:
    """The CLI as a user runs it: no BATCHLINE_API_KEY, so it reads the key file of the service's
    first start."""
    full_env = {key: value for key, value in os.environ.items() if key != "BATCHLINE_API_KEY"}
    full_env.update({"BATCHLINE_URL": url or service.base_url, "COLUMNS": "200", **env})
    if service is not None:
        full_env["BATCHLINE_VAR_DIR"] = service.env["BATCHLINE_VAR_DIR"]
    return subprocess.run([str(BATCHLINE), *args], env=full_env, cwd=REPO, capture_output=True, text=True,
                          timeout=timeout_s)


def test_given_a_running_service_when_a_jsonl_file_is_submitted_with_wait_then_progress_summary_and_results_are_written(
        start_service, tmp_path):
    service = start_service(BATCHLINE_SIMULATED_TTFT_MS="50")
    created = run_cli("agents", "create", "--model", "simulated/echo", "--name", "cli", service=service)
    assert created.returncode == 0, created.stderr
    agent_id = created.stdout.strip()
    requests = tmp_path / "requests.jsonl"
    # lines without agent_id take --agent; a blank line is skipped
    requests.write_text("\n".join([json.dumps({"input": f"question {i}"}) for i in range(12)]
                                  + ["", json.dumps({"agent_id": agent_id, "input": "last"})]) + "\n")
    out = tmp_path / "results.jsonl"

    done = run_cli("submit", str(requests), "--agent", agent_id, "--wait", "--out", str(out), service=service)

    assert done.returncode == 0, done.stderr
    assert "13/13" in done.stdout  # the progress bar reached the end
    assert "end_turn" in done.stdout and "13" in done.stdout
    assert "ttft p50" in done.stdout and "ttft p95" in done.stdout and " ms" in done.stdout
    results = [json.loads(line) for line in out.read_text().splitlines()]
    assert [result["index"] for result in results] == list(range(13))
    assert all(result["status"] == "succeeded" and result["output_text"] for result in results)
    assert results[0]["messages"][0]["content"][0]["text"] == "question 0"
    assert results[12]["messages"][0]["content"][0]["text"] == "last"

    batch_id = re.search(r"Batch (job-\S+) submitted with 13 requests", done.stdout).group(1)
    status = run_cli("status", batch_id, service=service)
    # ids stay whole (to be copied) in a narrow terminal
    listed = run_cli("list", service=service, COLUMNS="60")
    agents = run_cli("agents", "list", service=service, COLUMNS="60")
    exported = run_cli("results", batch_id, service=service)
    assert status.returncode == 0 and "completed" in status.stdout
    assert listed.returncode == 0 and batch_id in listed.stdout
    assert agents.returncode == 0 and agent_id in agents.stdout
    assert exported.stdout == out.read_text()


def _one_line_error(result: subprocess.CompletedProcess[str], text: str) -> None:
    assert result.returncode == 1
    assert result.stderr.startswith("Error: ") and result.stderr.count("\n") == 1, result.stderr
    assert text in result.stderr
    assert "Traceback" not in result.stderr + result.stdout


def test_given_no_service_at_the_url_when_a_command_runs_then_one_clear_line_and_exit_1():
    _one_line_error(run_cli("list", url=f"http://127.0.0.1:{free_port()}"), "not reachable")


def test_given_a_service_when_a_missing_batch_a_bad_line_or_a_line_without_agent_is_given_then_one_clear_line_each(
        start_service, tmp_path):
    service = start_service(workers=False)
    _one_line_error(run_cli("status", "job-nope", service=service), "Batch 'job-nope' not found. (HTTP 404)")
    _one_line_error(run_cli("cancel", "job-nope", service=service), "not found")
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"agent_id": "agent-x", "input": "ok"}\n{"input": oops}\n')
    _one_line_error(run_cli("submit", str(bad), service=service), "bad.jsonl, line 2: not valid JSON")
    no_agent = tmp_path / "no_agent.jsonl"
    no_agent.write_text('{"input": "who answers?"}\n')
    _one_line_error(run_cli("submit", str(no_agent), service=service), "line 1: the request has no agent_id")
    invalid = tmp_path / "invalid.jsonl"
    invalid.write_text('{"agent_id": "agent-x", "input": "ok"}\n\n{"agent_id": "agent-x", "input": 5}\n')
    _one_line_error(run_cli("submit", str(invalid), service=service), "invalid.jsonl, line 3: Invalid request: "
                    "requests.1.input: must be a string or a list of content parts. (HTTP 422)")
    _one_line_error(run_cli("submit", str(no_agent), "--agent", "agent-missing", service=service),
                    "no_agent.jsonl, line 1: Agent 'agent-missing' (requests[0].agent_id) not found. (HTTP 404)")


def test_given_a_real_service_when_monitor_once_runs_with_each_tenant_s_key_then_each_sees_only_its_batch(
        start_service, redis_url):
    service = start_service(workers=False)
    agent = httpx.post(f"{service.base_url}/v1/agents/", json={"model": "simulated/echo"}, headers=service.auth)
    batch = httpx.post(f"{service.base_url}/v1/messages/batches", headers=service.auth,
                       json={"requests": [{"agent_id": agent.json()["id"], "input": "q"}]}).json()["id"]
    mine = run_cli("monitor", "--once", service=service)  # the key file of the first start
    assert mine.returncode == 0 and batch in mine.stdout, mine.stderr
    theirs = run_cli("monitor", "--once", service=service, BATCHLINE_API_KEY=create_key(redis_url, tenant="b"))
    assert theirs.returncode == 0 and "batches" in theirs.stdout and batch not in theirs.stdout, theirs.stderr
    refused = run_cli("monitor", "--once", service=service, BATCHLINE_API_KEY="bl_" + "x" * 40)
    assert refused.returncode == 1 and "Invalid API key" in refused.stderr and "Traceback" not in refused.stderr
