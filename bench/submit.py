"""What answering POST /v1/messages/batches costs for a 10,000-request batch over real HTTP
(gunicorn), against the naive design that enqueues one Dramatiq message per request inside the
POST. Same redis-server, one run, side by side.

    python -m bench.submit [--requests 10000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import dramatiq
import httpx
import redis
from dramatiq.brokers.redis import RedisBroker

from app.embedded_redis import free_port
from bench.concurrency import auth, start_redis
from tests.support.processes import service_env, web_process


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        redis_process, redis_url = start_redis(Path(tmp))
        try:
            env = service_env(redis_url, BATCHLINE_VAR_DIR=str(Path(tmp) / "var"))
            web = web_process(env, port=free_port(), log=Path(tmp) / "web.log")
            with web as base, httpx.Client(timeout=60, headers=auth(Path(tmp) / "var")) as http:
                agent = http.post(f"{base}/v1/agents/", json={"model": "simulated/echo"}).json()
                body = {"requests": [{"agent_id": agent["id"], "input": f"question {i}"} for i in range(args.requests)]}
                posts = []
                for _ in range(args.repeat):
                    started = time.monotonic()
                    response = http.post(f"{base}/v1/messages/batches", json=body)
                    posts.append(time.monotonic() - started)
                    assert response.status_code == 200, response.text
            broker = RedisBroker(url=redis_url)
            naive = []
            for _ in range(args.repeat):
                started = time.monotonic()
                for i in range(args.requests):
                    broker.enqueue(dramatiq.Message(queue_name="naive", actor_name="run_item", args=(i,), kwargs={},
                                                    options={}))
                naive.append(time.monotonic() - started)
                redis.Redis.from_url(redis_url).delete("dramatiq:naive", "dramatiq:naive.msgs")
        finally:
            redis_process.terminate()
    ours, theirs = statistics.median(posts), statistics.median(naive)
    print(f"{args.requests} requests per batch, median of {args.repeat}")
    print(f"batchline POST (validate, store, one start message): {ours * 1000:8.0f} ms")
    print(f"naive: one send() per request, enqueue only:          {theirs * 1000:8.0f} ms  ({theirs / ours:.1f}x)")


if __name__ == "__main__":
    main()
