"""Zero configuration with two web workers (gunicorn `--workers 2`) starting together on an empty
Redis: exactly one key is made, saved (0600) and printed once; a second start reuses it; a Redis
emptied under the key file gets the file's key registered again; leftovers in the var directory
do not stop the start."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import redis

from app.embedded_redis import free_port
from app.store import Store, connect
from app.store.keys import API_KEYS_BY_HASH
from tests.support.processes import service_env, web_process

#: A gunicorn config whose hook says when a worker has built the app (create_app has returned).
LOADED_HOOK = 'def post_worker_init(worker):\n    worker.log.info("worker %s loaded the app", worker.pid)\n'
LOADED = "loaded the app"


@contextmanager
def two_web_workers(redis_url: str, tmp_path: Path) -> Iterator[str]:
    """Two gunicorn workers, both with the app built, on `redis_url` with the test's var dir."""
    config, log = tmp_path / "hooks.py", tmp_path / "web.log"
    config.write_text(LOADED_HOOK)
    before = log.read_text().count(LOADED) if log.exists() else 0
    env = service_env(redis_url, BATCHLINE_VAR_DIR=str(tmp_path / "var"))
    with web_process(env, port=free_port(), log=log, workers=2, config=config) as base_url:
        deadline = time.monotonic() + 30
        while log.read_text().count(LOADED) < before + 2:
            assert time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(0.05)
        yield base_url


def _status_with(base_url: str, key: str) -> int:
    return httpx.get(f"{base_url}/v1/agents/", headers={"Authorization": f"Bearer {key}"}).status_code


def test_given_an_empty_redis_when_two_web_workers_start_together_then_one_key_is_made_saved_and_reused(
        redis_url, tmp_path):
    store = Store(client=connect(redis_url))
    var = tmp_path / "var"
    var.mkdir()
    (var / "api-key.tmp").mkdir()  # what an odd crash or a careless operator may leave behind
    key_file, log = var / "api-key", tmp_path / "web.log"

    with two_web_workers(redis_url, tmp_path) as base_url:
        key = key_file.read_text().strip()
        assert key.startswith("bl_") and key_file.stat().st_mode & 0o777 == 0o600
        assert store.api_keys.count() == 1 and len(store.client.hgetall(API_KEYS_BY_HASH)) == 1
        assert log.read_text().count(key) == 1
        assert _status_with(base_url, key) == 200

    with two_web_workers(redis_url, tmp_path) as base_url:
        assert key_file.read_text().strip() == key and store.api_keys.count() == 1
        assert log.read_text().count(key) == 1
        assert _status_with(base_url, key) == 200

    redis.Redis.from_url(redis_url).flushall()
    with two_web_workers(redis_url, tmp_path) as base_url:
        # the file's key is registered again, not replaced: a client holding it keeps working
        assert key_file.read_text().strip() == key and store.api_keys.count() == 1
        assert store.api_keys.list()[0].tenant == "default"
        assert _status_with(base_url, key) == 200
        assert log.read_text().count(key) == 1
    assert "Traceback" not in log.read_text()
