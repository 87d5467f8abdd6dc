"""End-to-end fixtures: the real web process (gunicorn) and real dramatiq workers on the test's
redis-server, configured through the environment exactly as in production."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from letta_client import Letta

from app.embedded_redis import free_port
from tests.support.processes import service_env, web_process, worker_process

WEBHOOK_SECRET = "whsec_" + "dGVzdC1zZWNyZXQtZm9yLWJhdGNobGluZS10ZXN0cw=="
TERMINAL = ("completed", "failed", "cancelled", "expired")


@dataclass
class Service:
    base_url: str
    env: dict[str, str]
    logs: Path
    stack: ExitStack

    @property
    def api_key(self) -> str:
        """The default tenant's key, which the web process made at its first start."""
        return (Path(self.env["BATCHLINE_VAR_DIR"]) / "api-key").read_text().strip()

    @property
    def auth(self) -> dict[str, str]:
        """Headers for a raw HTTP call as the default tenant."""
        return {"Authorization": f"Bearer {self.api_key}"}

    def client(self, api_key: str | None = None) -> Letta:
        # strict: a response whose shape differs from the SDK's models fails instead of passing
        return Letta(base_url=self.base_url, api_key=api_key or self.api_key, max_retries=0,
                     _strict_response_validation=True)

    def add_worker(self, *, processes: int = 1, threads: int = 8, name: str = "worker2") -> Any:
        return self.stack.enter_context(
            worker_process(self.env, log=self.logs / f"{name}.log", processes=processes, threads=threads))


@pytest.fixture
def start_service(redis_url: str, tmp_path: Path) -> Iterator[Callable[..., Service]]:
    with ExitStack() as stack:

        def start(*, processes: int = 1, threads: int = 8, workers: bool = True, on_redis: str | None = None,
                  **env: str) -> Service:
            full_env = service_env(on_redis or redis_url, **{"BATCHLINE_WEBHOOK_SECRET": WEBHOOK_SECRET,
                                                             "BATCHLINE_VAR_DIR": str(tmp_path / "var"), **env})
            if workers:
                stack.enter_context(worker_process(full_env, log=tmp_path / "worker.log", processes=processes,
                                                   threads=threads))
            base_url = stack.enter_context(web_process(full_env, port=free_port(), log=tmp_path / "web.log"))
            return Service(base_url=base_url, env=full_env, logs=tmp_path, stack=stack)

        yield start


def wait_for_status(client: Letta, batch_id: str, statuses: tuple[str, ...] = TERMINAL, *,
                    timeout_s: float = 60.0) -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        batch = client.batches.retrieve(batch_id)
        if batch.status in statuses:
            return batch
        if time.monotonic() > deadline:
            raise TimeoutError(f"batch {batch_id} still {batch.status} after {timeout_s} s")
        time.sleep(0.1)


def wait_until(predicate: Callable[[], bool], *, timeout_s: float, interval_s: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval_s)
    return predicate()


@pytest.fixture(scope="module")
def shared_service(redis_server: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    """One web process and one worker for a whole test module, on an emptied Redis. Tests that use
    it create their own agents (and model servers), so they do not see each other's data."""
    import redis

    redis.Redis.from_url(redis_server).flushall()
    logs = tmp_path_factory.mktemp("service")
    env = service_env(redis_server, BATCHLINE_WEBHOOK_SECRET=WEBHOOK_SECRET, BATCHLINE_VAR_DIR=str(logs / "var"),
                      BATCHLINE_LLM_BACKOFF_BASE_S="0.01", BATCHLINE_LLM_MAX_ATTEMPTS="2")
    with ExitStack() as stack:
        stack.enter_context(worker_process(env, log=logs / "worker.log", processes=1, threads=8))
        base_url = stack.enter_context(web_process(env, port=free_port(), log=logs / "web.log"))
        yield Service(base_url=base_url, env=env, logs=logs, stack=stack)


@pytest.fixture
def scenario(shared_service: Service) -> Iterator[Callable[..., Any]]:
    from tests.support.scenario import Scenario

    made: list[Scenario] = []

    def make(**kwargs: Any) -> Scenario:
        made.append(Scenario(shared_service, **kwargs))
        return made[-1]

    yield make
    for each in made:
        each.close()
