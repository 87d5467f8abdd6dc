"""What answering POST /v1/messages/batches costs over real HTTP (gunicorn, one gthread worker),
against the naive design that enqueues one Dramatiq message per request inside the POST. Same
redis-server, one run, side by side. Also reported: the web worker's peak memory during the POSTs
(VmHWM minus its RSS before the first one) against the body's size, and what Redis holds per
request once the batch is stored (before any worker runs).

    python -m bench.submit [--requests 100000] [--repeat 3] [--skip-naive] [--compare DIR]

`--compare DIR` also serves the same POSTs from the code in DIR (e.g. an earlier commit:
`git archive <commit> | tar -x -C DIR`), alternating with this checkout's, on the same Redis.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import dramatiq
import httpx
import redis
from dramatiq.brokers.redis import RedisBroker

from app.embedded_redis import free_port
from bench.concurrency import start_redis
from tests.support.processes import BIN, service_env, spawn, stop, wait_http


@dataclass
class Web:
    name: str
    base_url: str
    worker_pid: int
    posts_s: list[float] = field(default_factory=list)
    rss_before_kb: int = 0
    stored_bytes: int = 0


def _status_kb(pid: int, name: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(name + ":"):
            return int(line.split()[1])
    raise LookupError(name)


def _gunicorn_worker(master_pid: int) -> int:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        children = Path(f"/proc/{master_pid}/task/{master_pid}/children").read_text().split()
        if children:
            return int(children[0])
        time.sleep(0.1)
    raise TimeoutError("gunicorn started no worker")


@contextmanager
def _web(name: str, env: dict[str, str], directory: Path, code: Path | None) -> Iterator[Web]:
    directory.mkdir()
    if code is not None:
        env = {**env, "PYTHONPATH": str(code)}
    port = free_port()
    process = spawn([str(BIN / "gunicorn"), "--worker-class", "gthread", "--workers", "1", "--threads", "8",
                     "--bind", f"127.0.0.1:{port}", "--timeout", "120", "app:create_app()"],
                    env=env, cwd=directory, log=directory / "web.log")
    try:
        wait_http(f"http://127.0.0.1:{port}/readyz", process=process)
        yield Web(name=name, base_url=f"http://127.0.0.1:{port}", worker_pid=_gunicorn_worker(process.pid))
    finally:
        stop(process)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--skip-naive", action="store_true", help="do not time the naive enqueue")
    parser.add_argument("--compare", type=Path, help="a source tree whose web process serves the same POSTs")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, ExitStack() as stack:
        redis_process, redis_url = start_redis(Path(tmp))
        stack.callback(redis_process.terminate)
        env = service_env(redis_url, BATCHLINE_VAR_DIR=str(Path(tmp) / "var"), BATCHLINE_BATCH_REQUESTS_PER_HOUR="0")
        webs = [stack.enter_context(_web("this checkout", env, Path(tmp) / "web", None))]
        if args.compare is not None:
            webs.append(stack.enter_context(_web(str(args.compare), env, Path(tmp) / "compared", args.compare)))
        key = (Path(tmp) / "var" / "api-key").read_text().strip()
        store = redis.Redis.from_url(redis_url)
        with httpx.Client(timeout=120, headers={"Authorization": f"Bearer {key}"}) as http:
            agent = http.post(f"{webs[0].base_url}/v1/agents/", json={"model": "simulated/echo"}).json()
            body = json.dumps({"requests": [{"agent_id": agent["id"], "input": f"question {i}"}
                                            for i in range(args.requests)]}).encode()
            for web in webs:
                web.rss_before_kb = _status_kb(web.worker_pid, "VmRSS")
            for _ in range(args.repeat):
                for web in webs:  # alternating, so that both see the same load
                    used_before = store.info("memory")["used_memory"]
                    started = time.monotonic()
                    response = http.post(f"{web.base_url}/v1/messages/batches", content=body,
                                         headers={"Content-Type": "application/json"})
                    web.posts_s.append(time.monotonic() - started)
                    assert response.status_code == 200, response.text
                    web.stored_bytes += store.info("memory")["used_memory"] - used_before
        naive = []
        broker = RedisBroker(url=redis_url)
        for _ in range(0 if args.skip_naive else args.repeat):
            started = time.monotonic()
            for i in range(args.requests):
                broker.enqueue(dramatiq.Message(queue_name="naive", actor_name="run_item", args=(i,), kwargs={},
                                                options={}))
            naive.append(time.monotonic() - started)
            store.delete("dramatiq:naive", "dramatiq:naive.msgs")
        print(f"{args.requests} requests per batch ({len(body) / 1e6:.1f} MB body), {args.repeat} POSTs each, "
              f"load average {os.getloadavg()[0]:.1f}")
        for web in webs:
            peak_mb = (_status_kb(web.worker_pid, "VmHWM") - web.rss_before_kb) / 1024
            print(f"{web.name}: POST median {statistics.median(web.posts_s) * 1000:.0f} ms "
                  f"(range {min(web.posts_s) * 1000:.0f}-{max(web.posts_s) * 1000:.0f}); web peak memory "
                  f"+{peak_mb:.0f} MB = {peak_mb * 1024 * 1024 / len(body):.1f}x the body; Redis "
                  f"{web.stored_bytes / (args.repeat * args.requests):.0f} B per request")
    if naive:
        ours, theirs = statistics.median(webs[0].posts_s), statistics.median(naive)
        print(f"naive: one send() per request, enqueue only: {theirs * 1000:.0f} ms ({theirs / ours:.1f}x)")


if __name__ == "__main__":
    main()
