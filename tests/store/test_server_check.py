"""Batchline refuses a Redis that may evict keys (real redis-server, its policy set for the test)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis

from app import create_app
from app.settings import Settings
from app.store import UNSAFE_REDIS_EXIT_STATUS, Store, UnsafeRedis, connect


@pytest.fixture
def evicting(redis_url: str, request: pytest.FixtureRequest) -> Iterator[str]:
    """The test server with the policy `request.param`, restored afterwards."""
    client = redis.Redis.from_url(redis_url)
    client.config_set("maxmemory-policy", request.param)
    try:
        yield redis_url
    finally:
        client.config_set("maxmemory-policy", "noeviction")


@pytest.mark.parametrize("evicting", ["allkeys-lru", "volatile-ttl"], indirect=True)
def test_given_a_redis_that_evicts_keys_when_checked_then_it_is_refused_with_the_fix(evicting: str) -> None:
    with pytest.raises(UnsafeRedis, match=r"maxmemory-policy .* noeviction"):
        Store(client=connect(evicting)).check_server()


def test_given_a_redis_that_never_evicts_when_checked_then_it_is_accepted(redis_url: str) -> None:
    Store(client=connect(redis_url)).check_server()


@pytest.mark.parametrize("evicting", ["allkeys-lru"], indirect=True)
def test_given_a_redis_that_evicts_keys_when_the_web_app_is_built_then_it_exits_with_one_error_line(
        evicting: str, settings: Settings, caplog: pytest.LogCaptureFixture) -> None:
    with pytest.raises(SystemExit) as exited:
        create_app(settings.model_copy(update={"redis_url": evicting}))
    assert exited.value.code == UNSAFE_REDIS_EXIT_STATUS
    [line] = [record for record in caplog.records if record.levelname == "ERROR"]
    assert "web process refuses to start" in line.getMessage() and "allkeys-lru" in line.getMessage()
    assert line.exc_info is None
