"""The embedded redis-server: shared by every process of the service, persistent, and gone once
no process that uses it is left."""

from __future__ import annotations

import subprocess
import sys
import time

import redis

from app.embedded_redis import EmbeddedRedis, free_port
from tests.support.processes import service_env, web_process, worker_process


def _wait_gone(port: int, timeout_s: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            redis.Redis(port=port, socket_connect_timeout=0.3).ping()
        except redis.RedisError:
            return True
        time.sleep(0.1)
    return False


def test_given_two_users_when_both_ensure_then_they_share_one_server_that_stops_after_the_last_leaves(tmp_path):
    embedded = EmbeddedRedis(var_dir=tmp_path / "var")
    first = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    second = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        url = embedded.ensure(user_pid=first.pid)
        assert embedded.ensure(user_pid=second.pid) == url
        port = int(url.rsplit(":", 1)[1].split("/")[0])
        client = redis.Redis(port=port)
        client.set("kept", "yes")
        assert client.config_get("appendonly")["appendonly"] == "yes"
        first.kill()
        first.wait()
        time.sleep(4)  # past the grace period: the other user keeps it alive
        assert client.ping()
    finally:
        second.kill()
        second.wait()
        first.kill()
    assert _wait_gone(port)
    assert not embedded.port_path.exists()

    third = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        url = embedded.ensure(user_pid=third.pid)
        assert redis.Redis.from_url(url).get("kept") == b"yes"
    finally:
        third.kill()
        third.wait()
    assert _wait_gone(int(url.rsplit(":", 1)[1].split("/")[0]))


def test_given_a_fresh_var_dir_when_the_server_starts_then_its_log_holds_no_warning_or_traceback(tmp_path):
    embedded = EmbeddedRedis(var_dir=tmp_path / "var")
    user = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        url = embedded.ensure(user_pid=user.pid)
    finally:
        user.kill()
        user.wait()
    assert _wait_gone(int(url.rsplit(":", 1)[1].split("/")[0]))
    log = embedded.log_path.read_text()
    assert "RuntimeWarning" not in log and "Traceback" not in log, log


def _embedded_client(var_dir) -> redis.Redis:
    return redis.Redis(port=int((var_dir / "redis.port").read_text()))


def test_given_no_appendfsync_setting_when_the_web_process_starts_the_server_then_it_fsyncs_always(tmp_path):
    var_dir = tmp_path / "var"
    env = service_env(None, BATCHLINE_VAR_DIR=str(var_dir))
    with web_process(env, port=free_port(), log=tmp_path / "web.log"):
        client = _embedded_client(var_dir)
        assert client.config_get("appendfsync") == {"appendfsync": "always"}
        port = client.connection_pool.connection_kwargs["port"]
    assert _wait_gone(port)


def test_given_batchline_redis_appendfsync_when_a_worker_starts_the_server_then_it_runs_with_that_policy(tmp_path):
    var_dir = tmp_path / "var"
    env = service_env(None, BATCHLINE_VAR_DIR=str(var_dir), BATCHLINE_REDIS_APPENDFSYNC="no")
    with worker_process(env, log=tmp_path / "worker.log"):
        client = _embedded_client(var_dir)
        assert client.config_get("appendfsync") == {"appendfsync": "no"}
        assert client.config_get("appendonly") == {"appendonly": "yes"}
        port = client.connection_pool.connection_kwargs["port"]
    assert _wait_gone(port)


def test_given_a_server_running_everysec_when_a_process_joins_with_always_then_the_server_switches(tmp_path):
    embedded = EmbeddedRedis(var_dir=tmp_path / "var")
    first = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    second = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        url = embedded.ensure(user_pid=first.pid, appendfsync="everysec")
        client = redis.Redis.from_url(url)
        assert client.config_get("appendfsync") == {"appendfsync": "everysec"}
        assert embedded.ensure(user_pid=second.pid, appendfsync="always") == url
        assert client.config_get("appendfsync") == {"appendfsync": "always"}
    finally:
        for user in (first, second):
            user.kill()
            user.wait()
    assert _wait_gone(int(url.rsplit(":", 1)[1].split("/")[0]))
