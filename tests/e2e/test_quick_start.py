"""The README's quick start: its run command serves the whole service (web, worker, embedded
Redis) on 127.0.0.1:8283, data survives a restart, and CI runs the README's test command."""

from __future__ import annotations

import re
import signal
import subprocess
import time
from pathlib import Path

import httpx
import redis

from tests.support.processes import REPO, service_env, stop, wait_http

PORT = 8283


def quick_start_commands() -> list[str]:
    readme = (REPO / "README.md").read_text()
    block = re.search(r"## Quick start\s+```bash\n(.*?)```", readme, re.S)
    assert block, "README.md must open with a Quick start code block"
    return [line for line in block.group(1).splitlines() if line.strip()]


def test_given_the_readme_then_it_gives_exactly_two_commands_and_ci_runs_the_second():
    commands = quick_start_commands()
    assert len(commands) == 2
    assert "honcho start" in commands[0]
    assert "pytest" in commands[1]
    assert commands[1] in (REPO / ".ci" / "run").read_text()


def _start(var_dir: Path, log: Path) -> subprocess.Popen:
    run_service = quick_start_commands()[0].split("&&")[-1].strip()
    env = service_env(None, BATCHLINE_VAR_DIR=str(var_dir))
    env.pop("PORT", None)
    with open(log, "ab") as out:
        process = subprocess.Popen(["bash", "-c", run_service], cwd=REPO, env=env, stdout=out,
                                   stderr=subprocess.STDOUT, start_new_session=True)
    wait_http(f"http://127.0.0.1:{PORT}/readyz", timeout_s=60, process=process)
    return process


def _embedded_port(var_dir: Path) -> int:
    return int((var_dir / "redis.port").read_text())


def test_given_no_redis_url_when_the_readme_command_runs_then_it_serves_on_8283_and_keeps_data_across_a_restart(
        tmp_path):
    var_dir, log = tmp_path / "var", tmp_path / "honcho.log"
    base = f"http://127.0.0.1:{PORT}"
    process = _start(var_dir, log)
    try:
        port = _embedded_port(var_dir)
        agent = httpx.post(f"{base}/v1/agents/", json={"name": "keeper", "model": "simulated/echo"}).json()
        batch = httpx.post(f"{base}/v1/messages/batches",
                           json={"requests": [{"agent_id": agent["id"], "input": f"hi {i}"} for i in range(5)]}).json()
        deadline = time.monotonic() + 30
        while httpx.get(f"{base}/v1/messages/batches/{batch['id']}").json()["status"] != "completed":
            assert time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(0.2)
    finally:
        stop(process, sig=signal.SIGINT)
    # the embedded Redis stops with the service
    deadline = time.monotonic() + 15
    while _answers(port):
        assert time.monotonic() < deadline, "embedded redis-server outlived the service"
        time.sleep(0.2)
    assert (var_dir / "appendonly.aof").exists()

    process = _start(var_dir, log)
    try:
        assert httpx.get(f"{base}/v1/agents/{agent['id']}").json()["name"] == "keeper"
        again = httpx.get(f"{base}/v1/messages/batches/{batch['id']}").json()
        assert again["status"] == "completed" and again["request_counts"]["succeeded"] == 5
        messages = httpx.get(f"{base}/v1/messages/batches/{batch['id']}/messages").json()["messages"]
        assert len(messages) == 10
    finally:
        stop(process, sig=signal.SIGINT)


def _answers(port: int) -> bool:
    try:
        return bool(redis.Redis(port=port, socket_connect_timeout=0.5).ping())
    except redis.RedisError:
        return False

