"""Start Batchline's real processes for tests: gunicorn serving the app, the dramatiq CLI over
the actors package, or the whole Procfile under honcho.

They run in the directory of their log (the test's own tmp dir), not in the repo: Settings reads
`.env` from the working directory, and a developer's `.env` in the checkout must not reach the
processes under test. The editable install makes `app` and `actors` importable from anywhere."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def service_env(redis_url: str | None, **extra: str) -> dict[str, str]:
    own = ("BATCHLINE_", "OPENAI_", "ANTHROPIC_")
    env = {key: value for key, value in os.environ.items() if not key.startswith(own)}
    env.pop("REDIS_URL", None)
    if redis_url is not None:
        env["REDIS_URL"] = redis_url
    env.update({"BATCHLINE_CALLBACK_ALLOW_PRIVATE": "true", "PYTHONUNBUFFERED": "1", **extra})
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    return env


def wait_http(url: str, *, timeout_s: float = 30.0, process: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"process exited with {process.returncode} before {url} answered")
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise TimeoutError(f"{url} did not answer within {timeout_s} s")


def stop(process: subprocess.Popen, *, timeout_s: float = 20.0, sig: int = signal.SIGTERM) -> None:
    if process.poll() is None:
        os.killpg(process.pid, sig)
        try:
            process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)


def spawn(args: list[str], *, env: dict[str, str], cwd: Path, log: Path) -> subprocess.Popen:
    with open(log, "ab") as out:
        return subprocess.Popen(args, env=env, cwd=cwd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)


@contextmanager
def web_process(env: dict[str, str], *, port: int, log: Path, cwd: Path | None = None,
                workers: int = 1, config: Path | None = None) -> Iterator[str]:
    """gunicorn serving the app; `config` is a gunicorn config file (hooks) to add."""
    process = spawn([str(BIN / "gunicorn"), "--worker-class", "gthread", "--workers", str(workers), "--threads", "8",
                     "--bind", f"127.0.0.1:{port}", "--logger-class", "app.gunicorn_logging.Logger",
                     *(["--config", str(config)] if config else []), "app:create_app()"],
                    env=env, cwd=cwd or log.parent, log=log)
    base_url = f"http://127.0.0.1:{port}"
    try:
        wait_http(f"{base_url}/readyz", process=process)
        yield base_url
    finally:
        stop(process)


@contextmanager
def worker_process(env: dict[str, str], *, log: Path, processes: int = 1, threads: int = 8,
                   cwd: Path | None = None) -> Iterator[subprocess.Popen]:
    env = {"dramatiq_queue_prefetch": str(threads), "dramatiq_worker_timeout": "100", **env}
    process = spawn([str(BIN / "dramatiq"), "actors", "--processes", str(processes), "--threads", str(threads)],
                    env=env, cwd=cwd or log.parent, log=log)
    try:
        _wait_for_log(log, "Worker process is ready", count=processes, process=process)
        yield process
    finally:
        stop(process)


def _wait_for_log(log: Path, text: str, *, count: int, process: subprocess.Popen, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"worker exited with {process.returncode}: {log.read_text()[-2000:]}")
        if log.exists() and log.read_text().count(text) >= count:
            return
        time.sleep(0.1)
    raise TimeoutError(f"worker not ready within {timeout_s} s: {log.read_text()[-2000:]}")
