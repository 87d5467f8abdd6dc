"""Chaos for soak runs: batches run while worker processes are killed at random (SIGKILL and
SIGTERM) and started again, and Redis is killed and restarted. Shared by the soak test in the
suite and the longer `python -m bench.soak`."""

from __future__ import annotations

import os
import random
import signal
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import redis

from tests.e2e.conftest import Service, wait_for_status
from tests.support.redis_server import RestartableRedis


@dataclass
class ChaosReport:
    seed: int
    requests: int = 0
    events: Counter = field(default_factory=Counter)
    #: batch id -> (status, request_counts)
    outcomes: dict[str, tuple[str, dict[str, int]]] = field(default_factory=dict)
    #: requests whose input or answer was recorded other than exactly once
    not_exactly_once: int = 0
    model_calls: int = 0
    settle_s: float = 0.0
    sweep_totals: dict[str, str] = field(default_factory=dict)
    #: chaos events that struck while requests were still unfinished (the ones that test anything)
    events_during_work: int = 0

    @property
    def ok(self) -> bool:
        return self.not_exactly_once == 0 and all(
            status == "completed" and counts["succeeded"] == counts["total"]
            for status, counts in self.outcomes.values())


def run_chaos(service: Service, server: RestartableRedis, *, agent_id: str, batch_sizes: tuple[int, ...],
              duration_s: float, redis_restarts: int, seed: int, worker_threads: int = 4,
              pause_s: tuple[float, float] = (3.0, 7.0), settle_timeout_s: float = 180.0) -> ChaosReport:
    chance = random.Random(seed)
    report = ChaosReport(seed=seed, requests=sum(batch_sizes))
    workers: dict[str, Any] = {name: service.add_worker(name=name, threads=worker_threads) for name in ("w1", "w2")}
    client = service.client()
    batches = [client.batches.create(requests=[{"agent_id": agent_id, "input": f"b{b} q{i}"} for i in range(size)]).id
               for b, size in enumerate(batch_sizes)]
    started = time.monotonic()
    restart_at = [started + duration_s * (n + 1) / (redis_restarts + 1) for n in range(redis_restarts)]
    while time.monotonic() - started < duration_s:
        time.sleep(chance.uniform(*pause_s))
        if any(client.batches.retrieve(batch_id).status == "running" for batch_id in batches):
            report.events_during_work += 1
        if restart_at and time.monotonic() >= restart_at[0]:
            restart_at.pop(0)
            server.kill()
            time.sleep(2)
            server.start()
            report.events["redis restart"] += 1
            continue
        name = chance.choice(sorted(workers))
        how = chance.choice((signal.SIGKILL, signal.SIGTERM))
        os.killpg(workers[name].pid, how)
        workers[name].wait(timeout=30)
        report.events[how.name] += 1
        workers[name] = service.add_worker(name=f"{name}-{sum(report.events.values())}", threads=worker_threads)
    chaos_ended = time.monotonic()
    for batch_id in batches:
        done = wait_for_status(client, batch_id, timeout_s=settle_timeout_s)
        report.outcomes[batch_id] = (done.status, dict(done.request_counts))
        per_item = Counter((m.batch_item_id, m.role) for m in client.batches.messages.list(batch_id, limit=100))
        report.not_exactly_once += sum(1 for count in per_item.values() if count != 1)
        report.not_exactly_once += max(0, 2 * done.request_counts["total"] - len(per_item))
    report.settle_s = time.monotonic() - chaos_ended
    report.sweep_totals = redis.Redis.from_url(server.url, decode_responses=True).hgetall("bl:sweep:totals")
    return report
