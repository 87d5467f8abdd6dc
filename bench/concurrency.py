"""How many model streams one worker process keeps in flight: Batchline's chunk actor (items run
concurrently on the worker's event loop) against one message per request, streamed by a plain
sync actor (8 threads) or by an async actor given as many threads as requests. Same machine,
same fake OpenAI server, same redis-server, one run, side by side.

    python -m bench.concurrency [--requests 160] [--threads 8] [--ttft-s 1.0] [--without-sync]
"""

from __future__ import annotations

import argparse
import subprocess
import tempfile
import time
from pathlib import Path

import dramatiq
import httpx
import redis
from dramatiq.brokers.redis import RedisBroker

from app.embedded_redis import free_port
from tests.fakes.model_servers import FakeOpenAIServer
from tests.support.processes import REPO, service_env, spawn, stop, web_process, worker_process


def start_redis(directory: Path) -> tuple[subprocess.Popen, str]:
    from app.embedded_redis import redis_server_binary

    port = free_port()
    process = subprocess.Popen([str(redis_server_binary()), "--port", str(port), "--save", "", "--dir", str(directory)],
                               stdout=subprocess.DEVNULL)
    client = redis.Redis(port=port)
    for _ in range(100):
        try:
            client.ping()
            break
        except redis.ConnectionError:
            time.sleep(0.05)
    return process, f"redis://127.0.0.1:{port}/0"


def run_batchline(redis_url: str, model: FakeOpenAIServer, *, requests: int, threads: int, logs: Path) -> float:
    env = service_env(redis_url, BATCHLINE_VAR_DIR=str(logs / "var"))
    with worker_process(env, log=logs / "bl-worker.log", processes=1, threads=threads), \
            web_process(env, port=free_port(), log=logs / "bl-web.log") as base, \
            httpx.Client(base_url=base, headers=auth(logs / "var")) as http:
        agent = http.post("/v1/agents/", json={"llm_config": {
            "model": "m", "model_endpoint_type": "openai", "model_endpoint": model.base_url}}).json()
        started = time.monotonic()
        batch = http.post("/v1/messages/batches", json={
            "requests": [{"agent_id": agent["id"], "input": f"q{i}"} for i in range(requests)]}).json()
        while http.get(f"/v1/messages/batches/{batch['id']}").json()["status"] != "completed":
            time.sleep(0.05)
        return time.monotonic() - started


def auth(var_dir: Path) -> dict[str, str]:
    """Headers with the key the web process made at its first start (`<var>/api-key`)."""
    return {"Authorization": f"Bearer {(var_dir / 'api-key').read_text().strip()}"}


def run_plain(redis_url: str, model: FakeOpenAIServer, *, requests: int, threads: int, logs: Path,
              actor: str = "stream_one") -> float:
    env = service_env(redis_url, dramatiq_queue_prefetch=str(threads), dramatiq_worker_timeout="100")
    worker = spawn([str(Path(REPO / ".venv/bin/dramatiq")), "bench.plain_dramatiq", "--processes", "1",
                    "--threads", str(threads), "--queues", "plain"], env=env, cwd=REPO, log=logs / "plain.log")
    try:
        time.sleep(3)
        broker = RedisBroker(url=redis_url)
        client = redis.Redis.from_url(redis_url)
        started = time.monotonic()
        for _ in range(requests):
            broker.enqueue(dramatiq.Message(queue_name="plain", actor_name=actor,
                                            args=(model.base_url, "plain:done"), kwargs={}, options={}))
        while int(client.get("plain:done") or 0) < requests:
            time.sleep(0.05)
        return time.monotonic() - started
    finally:
        stop(worker)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=160)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--ttft-s", type=float, default=1.0)
    parser.add_argument("--without-sync", action="store_true",
                        help="leave out the sync actor (it needs requests / threads seconds)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        logs = Path(tmp)
        redis_process, redis_url = start_redis(logs)
        try:
            results = {}
            contenders = (
                (f"batchline chunk actor, {args.threads} threads", run_batchline, args.threads, {}),
                (f"sync actor per request, {args.threads} threads", run_plain, args.threads, {}),
                (f"async actor per request, {args.requests} threads", run_plain, args.requests,
                 {"actor": "stream_one_async"}),
            )
            if args.without_sync:
                contenders = contenders[::2]
            for name, run, threads, extra in contenders:
                redis.Redis.from_url(redis_url).flushall()
                with FakeOpenAIServer(first_token_delay_s=args.ttft_s) as model:
                    elapsed = run(redis_url, model, requests=args.requests, threads=threads, logs=logs, **extra)
                    results[name] = (elapsed, model.max_open_streams)
        finally:
            redis_process.terminate()
    print(f"{args.requests} requests, first token after {args.ttft_s:g} s, 1 worker process")
    print(f"{'design':42} {'wall s':>8} {'req/s':>8} {'max open streams':>17} {'vs batchline':>13}")
    ours = next(iter(results.values()))[0]
    for name, (elapsed, streams) in results.items():
        print(f"{name:42} {elapsed:8.2f} {args.requests / elapsed:8.1f} {streams:17d} {elapsed / ours:12.1f}x")


if __name__ == "__main__":
    main()
