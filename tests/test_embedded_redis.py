"""The embedded redis-server: shared by every process of the service, persistent, and gone once
no process that uses it is left."""

from __future__ import annotations

import subprocess
import sys
import time

import redis

from app.embedded_redis import EmbeddedRedis


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
