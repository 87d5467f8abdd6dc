"""The long soak: batches run for minutes while worker processes are killed at random (SIGKILL
and SIGTERM) and started again and Redis is killed and restarted several times, all on real
processes (gunicorn, dramatiq, redis-server with append-only files) and a local streaming model
server. It prints what happened and whether every request ended exactly once.

    python -m bench.soak [--minutes 5] [--redis-restarts 3] [--seed N]
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

import httpx

from app.embedded_redis import free_port
from tests.e2e.conftest import Service
from tests.fakes.model_servers import FakeOpenAIServer, Reply
from tests.support.chaos import run_chaos
from tests.support.processes import service_env, web_process
from tests.support.redis_server import RestartableRedis

RECOVERY = {"BATCHLINE_SWEEP_INTERVAL_S": "2", "BATCHLINE_ITEM_LEASE_S": "3",
            "BATCHLINE_WORKER_HEARTBEAT_TIMEOUT_S": "4", "BATCHLINE_CHUNK_SIZE": "10"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=5.0)
    parser.add_argument("--redis-restarts", type=int, default=3)
    parser.add_argument("--batches", default="1200,800,600,400", help="sizes, comma-separated")
    parser.add_argument("--seed", type=int, default=None)
    args = parser.parse_args()
    seed = args.seed if args.seed is not None else int(time.time())
    delays = random.Random(seed)
    sizes = tuple(int(size) for size in args.batches.split(","))
    with tempfile.TemporaryDirectory() as tmp, ExitStack() as stack, FakeOpenAIServer() as model:
        model.script = lambda body, n: Reply(first_token_delay_s=delays.uniform(2.0, 5.0))
        server = RestartableRedis(directory=Path(tmp) / "redis").start()
        stack.callback(server.stop)
        env = service_env(server.url, BATCHLINE_VAR_DIR=str(Path(tmp) / "var"), **RECOVERY)
        base_url = stack.enter_context(web_process(env, port=free_port(), log=Path(tmp) / "web.log", cwd=Path(tmp)))
        service = Service(base_url=base_url, env=env, logs=Path(tmp), stack=stack)
        agent = httpx.post(f"{base_url}/v1/agents/", json={"model": "openai/gpt-4o-mini", "llm_config": {
            "model": "gpt-4o-mini", "model_endpoint_type": "openai", "model_endpoint": model.base_url}}).json()
        started = time.monotonic()
        report = run_chaos(service, server, agent_id=agent["id"], batch_sizes=sizes, duration_s=args.minutes * 60,
                           redis_restarts=args.redis_restarts, seed=seed, worker_threads=2, settle_timeout_s=600)
        elapsed = time.monotonic() - started
        report.model_calls = len(model.requests)
    print(f"seed {seed}: {len(sizes)} batches, {report.requests} requests, {elapsed:.0f} s")
    print(f"chaos: {dict(report.events)}, {report.events_during_work} of them while requests were unfinished")
    print(f"batches completed: {sum(status == 'completed' for status, _ in report.outcomes.values())}/{len(sizes)}")
    print(f"requests not recorded exactly once: {report.not_exactly_once}")
    print(f"model calls: {report.model_calls} for {report.requests} requests "
          f"({report.model_calls / report.requests:.2f} per request: re-runs after kills)")
    print(f"settled {report.settle_s:.1f} s after the chaos stopped")
    print(f"reconciler totals: {report.sweep_totals}")
    print("PASS" if report.ok else "FAIL")


if __name__ == "__main__":
    main()
