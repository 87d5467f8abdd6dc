"""The README's quick start: its run command serves the whole service (web, worker, embedded
Redis) on `BATCHLINE_PORT` (8283 by default), data survives a restart, and CI runs the README's
test command. The service under test runs on a free port with its own data directory, so this
passes beside a Batchline already serving on 8283."""

from __future__ import annotations

import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest
import redis

from app.embedded_redis import free_port
from app.settings import DEFAULT_PORT
from tests.support.processes import REPO, stop
from tests.support.quick_start import embedded_redis_port, quick_start_commands, start_quick_start


def test_given_the_readme_then_it_gives_exactly_two_commands_and_ci_runs_the_second():
    commands = quick_start_commands()
    assert len(commands) == 2
    assert "honcho start" in commands[0]
    assert "pytest" in commands[1]
    assert commands[1] in (REPO / ".ci" / "run").read_text()


def _procfile_line(name: str) -> str:
    lines = (REPO / "Procfile").read_text().splitlines()
    return next(line.split(":", 1)[1].strip() for line in lines if line.startswith(f"{name}:"))


@pytest.mark.parametrize(("chosen", "bound"), [(None, f"127.0.0.1:{DEFAULT_PORT}"), ("18384", "127.0.0.1:18384")])
def test_given_honcho_sets_port_5000_when_the_procfile_web_line_expands_then_it_binds_batchline_port_or_8283(
        chosen, bound):
    # honcho gives every process PORT (5000 when not told otherwise): the web line must not use it
    env = {"PATH": "/usr/bin:/bin", "PORT": "5000"} | ({"BATCHLINE_PORT": chosen} if chosen else {})
    expanded = subprocess.run(["sh", "-c", f"echo {_procfile_line('web')}"], env=env, capture_output=True,
                              text=True, check=True).stdout
    assert f"--bind {bound} " in expanded


class _OtherService(BaseHTTPRequestHandler):
    """Answers like a ready Batchline: the kind of server a user may have running on 8283."""

    def do_GET(self) -> None:
        body = b'{"status": "ready"}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_POST = do_GET

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def service_on_8283() -> Iterator[None]:
    """Something listens on the default port while the test runs (if a real service already
    does, that one serves the purpose)."""
    try:
        server = ThreadingHTTPServer(("127.0.0.1", DEFAULT_PORT), _OtherService)
    except OSError:
        yield
        return
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield
    server.shutdown()
    server.server_close()


def test_given_batchline_port_and_no_redis_url_when_the_readme_command_runs_then_it_serves_there_and_keeps_data(
        tmp_path, service_on_8283):
    var_dir, log, port = tmp_path / "var", tmp_path / "honcho.log", free_port()
    base = f"http://127.0.0.1:{port}"
    process = start_quick_start(tmp_path, var_dir, port, log)
    try:
        # zero configuration: the first start made a key, saved for the owner only and shown once
        key_file = var_dir / "api-key"
        key = key_file.read_text().strip()
        assert key.startswith("bl_") and key_file.stat().st_mode & 0o777 == 0o600
        assert log.read_text().count(key) == 1
        auth = {"Authorization": f"Bearer {key}"}
        assert httpx.get(f"{base}/v1/agents/").status_code == 401
        redis_port = embedded_redis_port(var_dir)
        agent = httpx.post(f"{base}/v1/agents/", headers=auth,
                           json={"name": "keeper", "model": "simulated/echo"}).json()
        # the answer came from this service: the agent is in its own embedded Redis
        assert any(redis.Redis(port=redis_port).scan_iter(match=f"*{agent['id']}*"))
        batch = httpx.post(f"{base}/v1/messages/batches", headers=auth,
                           json={"requests": [{"agent_id": agent["id"], "input": f"hi {i}"} for i in range(5)]}).json()
        deadline = time.monotonic() + 30
        while httpx.get(f"{base}/v1/messages/batches/{batch['id']}", headers=auth).json()["status"] != "completed":
            assert time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(0.2)
    finally:
        stop(process, sig=signal.SIGINT)
    # the embedded Redis stops with the service
    deadline = time.monotonic() + 15
    while _answers(redis_port):
        assert time.monotonic() < deadline, "embedded redis-server outlived the service"
        time.sleep(0.2)
    assert (var_dir / "appendonly.aof").exists()

    process = start_quick_start(tmp_path, var_dir, port, log)
    try:
        # the second start reuses the key: same file, still valid, not shown again
        assert key_file.read_text().strip() == key and log.read_text().count(key) == 1
        assert httpx.get(f"{base}/v1/agents/{agent['id']}", headers=auth).json()["name"] == "keeper"
        again = httpx.get(f"{base}/v1/messages/batches/{batch['id']}", headers=auth).json()
        assert again["status"] == "completed" and again["request_counts"]["succeeded"] == 5
        messages = httpx.get(f"{base}/v1/messages/batches/{batch['id']}/messages", headers=auth).json()["messages"]
        assert len(messages) == 10
    finally:
        stop(process, sig=signal.SIGINT)


def _answers(port: int) -> bool:
    try:
        return bool(redis.Redis(port=port, socket_connect_timeout=0.5).ping())
    except redis.RedisError:
        return False
