"""The results export's memory does not grow with the batch: resident size of the web process
(gunicorn's worker) while it streams GET /v1/messages/batches/{id}/results for batches of 10,000
and 100,000 requests, each with a stored answer (items committed directly through the store, as a
worker would, to save running the model calls). Each size gets a fresh web process.

    python -m bench.export [--sizes 10000 100000]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import httpx

from app.embedded_redis import free_port
from app.engine.messages import new_message
from app.schemas.agents import CreateAgent
from app.schemas.batches import LettaBatchRequest
from app.store import Store, connect
from app.store.runs import RunRecord
from bench.concurrency import start_redis
from tests.support.memory import PeakRss, descendants, rss_bytes
from tests.support.processes import BIN, service_env, spawn, stop, wait_http

#: The stored answer of every request (a few sentences, as a short model reply).
ANSWER = "The answer to this request, as a model would write it in a few sentences. " * 4


def make_batch(store: Store, size: int) -> str:
    agent = store.agents.create(CreateAgent(model="simulated/echo"))
    requests = [LettaBatchRequest(agent_id=agent["id"], input=f"question {i}") for i in range(size)]
    batch_id, _ = store.batches.create(requests=requests, callback_url=None, metadata=None,
                                       completion_window_s=24 * 3600)
    for start in range(0, size, 1000):
        for item_id in store.batches.item_ids(batch_id, start=start, stop=start + 999):
            messages = [new_message("user", [{"type": "text", "text": "question"}], agent_id=agent["id"],
                                    batch_item_id=item_id),
                        new_message("assistant", [{"type": "text", "text": ANSWER}], agent_id=agent["id"],
                                    batch_item_id=item_id)]
            store.runs.commit(agent_id=agent["id"], batch_id=batch_id, item_id=item_id, record=RunRecord(
                outcome="succeeded", stop_reason="end_turn", messages=messages, ttft_ns=1, total_duration_ns=2))
    return batch_id


def export(redis_url: str, batch_id: str, directory: Path) -> dict[str, float]:
    port = free_port()
    web = spawn([str(BIN / "gunicorn"), "--worker-class", "gthread", "--workers", "1", "--threads", "4",
                 "--bind", f"127.0.0.1:{port}", "app:create_app()"], env=service_env(redis_url), cwd=directory,
                log=directory / f"web-{port}.log")
    try:
        base = f"http://127.0.0.1:{port}"
        wait_http(f"{base}/readyz", process=web)
        worker = max(descendants(web.pid), key=rss_bytes)
        httpx.get(f"{base}/v1/messages/batches/{batch_id}")  # warm: the route's code is loaded
        before = rss_bytes(worker)
        lines = size = 0
        started = time.monotonic()
        with PeakRss(web.pid, interval_s=0.02) as peak, httpx.Client(timeout=None) as http, \
                http.stream("GET", f"{base}/v1/messages/batches/{batch_id}/results") as answer:
            for line in answer.iter_lines():
                lines += 1
                size += len(line) + 1
        return {"lines": lines, "mb": size / 1e6, "seconds": time.monotonic() - started,
                "rss_before_mb": before / 1e6, "rss_peak_mb": peak.peak_bytes / 1e6}
    finally:
        stop(web)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        redis_process, redis_url = start_redis(Path(tmp))
        try:
            store = Store(client=connect(redis_url))
            print(f"{'requests':>9} {'lines':>7} {'MB sent':>8} {'seconds':>8} {'web RSS before':>15} "
                  f"{'web RSS peak':>13} {'growth':>7}")
            for size in args.sizes:
                started = time.monotonic()
                batch_id = make_batch(store, size)
                print(f"  (made {size} committed requests in {time.monotonic() - started:.0f} s)", flush=True)
                r = export(redis_url, batch_id, Path(tmp))
                print(f"{size:>9} {r['lines']:>7.0f} {r['mb']:>8.1f} {r['seconds']:>8.1f} "
                      f"{r['rss_before_mb']:>12.1f} MB {r['rss_peak_mb']:>10.1f} MB "
                      f"{r['rss_peak_mb'] - r['rss_before_mb']:>4.1f} MB", flush=True)
        finally:
            redis_process.terminate()
            redis_process.wait(timeout=10)


if __name__ == "__main__":
    main()
