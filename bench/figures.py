"""Each figure of `python -m bench`, measured on a running Deployment (bench/harness.py). Every
function returns a dict of plain numbers, so that the caller can print it and write it as JSON."""

from __future__ import annotations

import json
import math
import statistics
import threading
import time
from typing import Any

import dramatiq
from dramatiq.brokers.redis import RedisBroker

from app.settings import DEFAULT_CHUNK_SIZE
from bench.harness import (
    ZERO_DELAY,
    Deployment,
    FakeModelProcess,
    RedisReading,
    cpu_s,
    plain_worker,
    stop,
    wait_for_batch,
    web_worker_pid,
)
from tests.support.memory import PeakRss, rss_bytes
from tests.support.processes import _wait_for_log

#: Requests per batch are spread over this many agents (each item reads its agent's history).
AGENTS = 1
#: Pause between the GETs of the batch poller: 50 GETs/s stays under the default rate limit of
#: 6,000 calls a minute per key, however long a run takes.
POLL_PAUSE_S = 0.02


def raw_ceiling(dep: Deployment, *, messages: int, threads: int) -> dict[str, Any]:
    """A no-op Dramatiq actor drained by 1 process x `threads`, timed from the first send (the
    worker already up) until the last message is acknowledged."""
    log = dep.directory / "plain.log"
    worker = plain_worker(dep.env, threads=threads, processes=1, log=log)
    try:
        _wait_for_log(log, "Worker process is ready", count=1, process=worker)
        broker = RedisBroker(url=dep.redis_url)
        client = dep.redis
        started = time.monotonic()
        for _ in range(messages):
            broker.enqueue(dramatiq.Message(queue_name="plain", actor_name="noop", args=(), kwargs={}, options={}))
        while client.hlen("dramatiq:plain.msgs") or client.llen("dramatiq:plain"):
            time.sleep(0.01)
        elapsed = time.monotonic() - started
    finally:
        stop(worker)
    return {"messages": messages, "seconds": elapsed, "messages_per_s": messages / elapsed}


def _agent(http: Any, *, model: str | None = None, endpoint: str | None = None) -> str:
    if endpoint is None:
        body: dict[str, Any] = {"model": model or "simulated/echo"}
    else:
        body = {"llm_config": {"model": "m", "model_endpoint_type": "openai", "model_endpoint": endpoint}}
    answer = http.post("/v1/agents/", json=body)
    answer.raise_for_status()
    return answer.json()["id"]


def _message_bytes(dep: Deployment) -> int:
    client = dep.redis
    total = 0
    keys = list(client.scan_iter("bl:msg:*", count=1000))
    for start in range(0, len(keys), 1000):
        with client.pipeline(transaction=False) as pipe:
            for key in keys[start:start + 1000]:
                pipe.memory_usage(key, samples=0)
            total += sum(size or 0 for size in pipe.execute())
    return total


def simulated(dep: Deployment, *, requests: int, processes: int, threads: int,
              message_bytes: bool = True, worker_nice: int = 0) -> dict[str, Any]:
    """Items/s, worker and redis-server CPU, Redis commands and memory per item on `simulated/echo`
    with no delays. Run it first on a fresh deployment: the message bytes are read from every
    `bl:msg:*` key. The workers run at `worker_nice` (BATCHLINE_WORKER_NICE): 0, the priority of
    the raw ceiling's plain worker, compares like with like on a machine others use too."""
    with dep.http() as http, dep.workers(processes=processes, threads=threads, **ZERO_DELAY,
                                         BATCHLINE_WORKER_NICE=str(worker_nice)) as worker:
        agents = [_agent(http) for _ in range(AGENTS)]
        body = {"requests": [{"agent_id": agents[i % AGENTS], "input": f"question {i}"} for i in range(requests)]}
        before, cpu_before, redis_before = RedisReading.take(dep.redis), cpu_s(worker.pid), cpu_s(dep.redis_pid)
        started = time.monotonic()
        batch = http.post("/v1/messages/batches", json=body).json()
        done = wait_for_batch(http, batch["id"], timeout_s=600)
        elapsed = time.monotonic() - started
        after, cpu_after, redis_after = RedisReading.take(dep.redis), cpu_s(worker.pid), cpu_s(dep.redis_pid)
    assert done["status"] == "completed", done
    messages = _message_bytes(dep) if message_bytes else 0
    return {"requests": requests, "processes": processes, "threads": threads, "seconds": elapsed,
            "items_per_s": requests / elapsed, "worker_cpu_ms_per_item": (cpu_after - cpu_before) * 1000 / requests,
            "redis_cpu_ms_per_item": (redis_after - redis_before) * 1000 / requests,
            "redis_commands_per_item": (after.commands - before.commands) / requests,
            "redis_scripts_per_item": (after.evals - before.evals) / requests,
            "redis_bytes_per_item": (after.used_memory - before.used_memory) / requests,
            "message_bytes_per_item": messages / requests}


class _Poller(threading.Thread):
    """GETs a batch every POLL_PAUSE_S, recording each answer's latency, until told to stop."""

    def __init__(self, dep: Deployment, batch_id: str) -> None:
        super().__init__(daemon=True)
        self._dep, self._batch_id = dep, batch_id
        self.latencies_s: list[float] = []
        self.status = ""
        self.done = threading.Event()

    def run(self) -> None:
        try:
            self._poll()
        finally:
            self.done.set()  # also when a GET failed: the caller then sees the status it reached

    def _poll(self) -> None:
        with self._dep.http() as http:
            while not self.done.is_set():
                started = time.perf_counter()
                answer = http.get(f"/v1/messages/batches/{self._batch_id}")
                self.latencies_s.append(time.perf_counter() - started)
                answer.raise_for_status()
                self.status = answer.json()["status"]
                if self.status in ("completed", "failed", "cancelled", "expired"):
                    self.done.set()
                time.sleep(POLL_PAUSE_S)


def streaming(dep: Deployment, *, requests: int, processes: int, threads: int, ttft_s: float,
              max_streams: int = 1000) -> dict[str, Any]:
    """Worker CPU per request against the local streaming fake (its own process), the wall time
    against the ideal, and the p99 of GET batch while the requests stream."""
    with FakeModelProcess(first_token_delay_s=ttft_s, directory=dep.directory) as model, dep.http() as http, \
            dep.workers(processes=processes, threads=threads,
                        BATCHLINE_WORKER_MAX_STREAMS=str(max_streams)) as worker:
        agent = _agent(http, endpoint=model.base_url)
        body = {"requests": [{"agent_id": agent, "input": f"question {i}"} for i in range(requests)]}
        cpu_before, model_before = cpu_s(worker.pid), model.cpu_s()
        started = time.monotonic()
        batch = http.post("/v1/messages/batches", json=body).json()
        poller = _Poller(dep, batch["id"])
        poller.start()
        poller.done.wait(timeout=600)
        elapsed = time.monotonic() - started
        cpu_after, model_after = cpu_s(worker.pid), model.cpu_s()
        poller.done.set()
        poller.join(timeout=30)
    assert poller.status == "completed", poller.status
    # Streams one process holds: a chunk per thread, every item of it at once, up to the cap.
    capacity = processes * min(max_streams, threads * DEFAULT_CHUNK_SIZE)
    ideal = max(1.0, requests / capacity) * ttft_s
    latencies = sorted(poller.latencies_s)
    return {"requests": requests, "processes": processes, "threads": threads, "ttft_s": ttft_s,
            "seconds": elapsed, "ideal_s": ideal, "wall_vs_ideal": elapsed / ideal,
            "requests_per_s": requests / elapsed,
            "worker_cpu_ms_per_request": (cpu_after - cpu_before) * 1000 / requests,
            "model_server_cpu_ms_per_request": (model_after - model_before) * 1000 / requests,
            "max_open_streams": model.stats.get("max_open_streams"),
            "get_batch_calls": len(latencies),
            "get_batch_p50_ms": statistics.median(latencies) * 1000,
            "get_batch_p99_ms": latencies[max(0, math.ceil(len(latencies) * 0.99) - 1)] * 1000}


def post_batch(dep: Deployment, *, requests: int, repeat: int) -> dict[str, Any]:
    """POST of a `requests`-request batch with no worker running (nothing else touches Redis):
    seconds per POST, and the web worker's peak resident growth against the body's size."""
    with dep.http(timeout_s=300) as http:
        agent = _agent(http)
        body = json.dumps({"requests": [{"agent_id": agent, "input": f"question {i}"}
                                        for i in range(requests)]}).encode()
        http.get(f"/v1/agents/{agent}")  # warm
        pid = web_worker_pid(dep.base_url)
        seconds, growth = [], []
        for _ in range(repeat):
            before = rss_bytes(pid)
            with PeakRss(pid, interval_s=0.01) as peak:
                started = time.monotonic()
                answer = http.post("/v1/messages/batches", content=body,
                                   headers={"Content-Type": "application/json"})
                seconds.append(time.monotonic() - started)
            assert answer.status_code == 200, answer.text[:500]
            growth.append(max(0, peak.peak_bytes - before))
    return {"requests": requests, "body_mb": len(body) / 1e6, "seconds": seconds,
            "rss_growth_mb": [value / 1e6 for value in growth],
            "rss_growth_vs_body": [value / len(body) for value in growth]}


def cancel_latency(dep: Deployment, *, times: int, requests: int = 10) -> dict[str, Any]:
    """From the cancel call to a GET that answers `cancelled`, no stream open (no worker runs,
    so every request is still queued), worst of `times`."""
    latencies = []
    with dep.http() as http:
        agent = _agent(http)
        for _ in range(times):
            batch = http.post("/v1/messages/batches", json={
                "requests": [{"agent_id": agent, "input": "q"} for _ in range(requests)]}).json()
            started = time.perf_counter()
            http.patch(f"/v1/messages/batches/{batch['id']}/cancel").raise_for_status()
            while http.get(f"/v1/messages/batches/{batch['id']}").json()["status"] != "cancelled":
                pass
            latencies.append(time.perf_counter() - started)
    return {"times": times, "worst_ms": max(latencies) * 1000, "median_ms": statistics.median(latencies) * 1000}


__all__ = ["cancel_latency", "post_batch", "raw_ceiling", "simulated", "streaming"]
