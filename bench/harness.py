"""What the bench modules share: a private redis-server, Batchline's web and worker processes on
it with an API key, a fake model server in a process of its own, and readings of CPU time, Redis
commands and memory taken from outside the processes measured."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import redis

from app.embedded_redis import free_port
from tests.support.memory import descendants
from tests.support.processes import REPO, service_env, spawn, stop, web_process, worker_process

_TICKS_PER_S = os.sysconf("SC_CLK_TCK")
#: Batches are polled this often while the bench waits for them (each poll is one GET).
POLL_INTERVAL_S = 0.1
#: The simulated provider with no delays: what `items/s` measures is Batchline, not a model.
ZERO_DELAY = {"BATCHLINE_SIMULATED_TTFT_MS": "0", "BATCHLINE_SIMULATED_TOKEN_MS": "0"}


def load() -> str:
    """The machine's load averages (1, 5, 15 min), to print beside every figure."""
    return " ".join(f"{value:.2f}" for value in os.getloadavg())


def cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process and everything below it (living processes only)."""
    total = 0
    for each in descendants(pid):
        try:
            fields = Path(f"/proc/{each}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / _TICKS_PER_S


def start_redis(directory: Path) -> tuple[subprocess.Popen, str]:
    from bench.concurrency import start_redis as start

    return start(directory)


@dataclass
class RedisReading:
    commands: int
    evals: int
    used_memory: int

    @classmethod
    def take(cls, client: redis.Redis) -> RedisReading:
        stats = client.info("commandstats")
        calls = {name.removeprefix("cmdstat_"): value["calls"] for name, value in stats.items()}
        evals = sum(calls.get(name, 0) for name in ("eval", "evalsha", "fcall"))
        return cls(commands=sum(calls.values()), evals=evals, used_memory=client.info("memory")["used_memory"])


@dataclass
class Deployment:
    """Redis, one web process, and worker processes started and stopped on demand."""

    directory: Path
    stack: ExitStack
    redis_url: str = ""
    base_url: str = ""
    env: dict[str, str] = field(default_factory=dict)
    web_pid: int = 0
    redis_pid: int = 0

    @property
    def redis(self) -> redis.Redis:
        return redis.Redis.from_url(self.redis_url)

    @property
    def api_key(self) -> str:
        return (Path(self.env["BATCHLINE_VAR_DIR"]) / "api-key").read_text().strip()

    def http(self, timeout_s: float = 60.0) -> httpx.Client:
        return httpx.Client(base_url=self.base_url, timeout=timeout_s,
                            headers={"Authorization": f"Bearer {self.api_key}"})

    @contextmanager
    def workers(self, *, processes: int, threads: int, **env: str) -> Iterator[subprocess.Popen]:
        log = self.directory / f"worker-{processes}x{threads}-{time.monotonic_ns()}.log"
        with worker_process({**self.env, **env}, log=log, processes=processes, threads=threads) as process:
            yield process


@contextmanager
def deployment(directory: Path, **env: str) -> Iterator[Deployment]:
    with ExitStack() as stack:
        redis_process, redis_url = start_redis(directory)
        stack.callback(redis_process.wait, timeout=10)
        stack.callback(redis_process.terminate)
        full_env = service_env(redis_url, BATCHLINE_VAR_DIR=str(directory / "var"), **env)
        found = Deployment(directory=directory, stack=stack, redis_url=redis_url, env=full_env,
                           redis_pid=redis_process.pid)
        found.base_url = stack.enter_context(web_process(full_env, port=free_port(), log=directory / "web.log"))
        found.web_pid = web_worker_pid(found.base_url)
        yield found


def web_worker_pid(base_url: str) -> int:
    """The gunicorn worker (the child that serves requests) behind `base_url`."""
    port = base_url.rsplit(":", 1)[1]
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if "gunicorn" in cmdline and f"127.0.0.1:{port}" in cmdline:
            children = [pid for pid in descendants(int(entry.name)) if pid != int(entry.name)]
            if children:
                return children[0]
    raise LookupError(f"no gunicorn worker serves {base_url}")


class FakeModelProcess:
    """tests/fakes/model_servers.py's OpenAI fake in a process of its own, so that its CPU is not
    the bench's and its event loop does not share a GIL with the bench's pollers."""

    def __init__(self, *, first_token_delay_s: float, directory: Path) -> None:
        self._args = [sys.executable, "-m", "bench.fake_model", str(first_token_delay_s)]
        self._log = directory / f"fake-model-{time.monotonic_ns()}.log"
        self._process: subprocess.Popen | None = None
        self.base_url = ""
        self.stats: dict[str, Any] = {}

    def __enter__(self) -> FakeModelProcess:
        self._process = subprocess.Popen(self._args, cwd=REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                         stderr=open(self._log, "ab"), text=True)
        assert self._process.stdout is not None
        self.base_url = self._process.stdout.readline().strip()
        if not self.base_url.startswith("http"):
            raise RuntimeError(f"the fake model server did not start: {self._log.read_text()[-2000:]}")
        return self

    def cpu_s(self) -> float:
        assert self._process is not None
        return cpu_s(self._process.pid)

    def __exit__(self, *exc: object) -> None:
        assert self._process is not None and self._process.stdin is not None and self._process.stdout is not None
        self._process.stdin.close()  # the server reports and exits when its stdin closes
        line = self._process.stdout.readline()
        self.stats = json.loads(line) if line.strip() else {}
        self._process.wait(timeout=30)


def wait_for_batch(http: httpx.Client, batch_id: str, *, timeout_s: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while True:
        batch = http.get(f"/v1/messages/batches/{batch_id}").json()
        if batch["status"] in ("completed", "failed", "cancelled", "expired"):
            return batch
        if time.monotonic() > deadline:
            raise TimeoutError(f"batch {batch_id} still {batch['status']} after {timeout_s} s")
        time.sleep(POLL_INTERVAL_S)


def plain_worker(env: dict[str, str], *, threads: int, processes: int, log: Path) -> subprocess.Popen:
    """A Dramatiq worker over bench/plain_dramatiq.py: Dramatiq alone, with Batchline's prefetch."""
    env = {"dramatiq_queue_prefetch": str(threads), "dramatiq_worker_timeout": "100", **env}
    return spawn([str(Path(sys.executable).parent / "dramatiq"), "bench.plain_dramatiq", "--processes",
                  str(processes), "--threads", str(threads), "--queues", "plain"], env=env, cwd=REPO, log=log)


__all__ = [
    "ZERO_DELAY",
    "Deployment",
    "FakeModelProcess",
    "RedisReading",
    "cpu_s",
    "deployment",
    "load",
    "plain_worker",
    "stop",
    "wait_for_batch",
    "web_worker_pid",
]
