"""The real web and worker processes refuse to start on a Redis that may evict keys: one clear
line, an exit, and no traceback."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from app.embedded_redis import free_port
from tests.support.processes import BIN, service_env, spawn, stop


@pytest.fixture
def evicting_redis(redis_url: str) -> Iterator[str]:
    client = redis.Redis.from_url(redis_url)
    client.config_set("maxmemory-policy", "allkeys-lru")
    try:
        yield redis_url
    finally:
        client.config_set("maxmemory-policy", "noeviction")


@pytest.mark.parametrize("process", ["web", "worker"])
def test_given_a_redis_that_evicts_keys_when_a_process_starts_then_it_exits_with_one_clear_line(
        process: str, evicting_redis: str, tmp_path: Path) -> None:
    args = {"web": ["gunicorn", "--workers", "1", "--bind", f"127.0.0.1:{free_port()}", "app:create_app()"],
            "worker": ["dramatiq", "actors", "--processes", "1", "--threads", "2"]}[process]
    log = tmp_path / f"{process}.log"
    started = spawn([str(BIN / args[0]), *args[1:]], env=service_env(evicting_redis), cwd=tmp_path, log=log)
    try:
        assert started.wait(timeout=30) != 0
    finally:
        stop(started)
    text = log.read_text()
    assert f"The {process} process refuses to start: Redis is configured with maxmemory-policy allkeys-lru" in text
    assert "Traceback" not in text
