"""What monitoring reads and what only monitoring writes: worker heartbeats and the metrics that
state changes record as they happen (commit_run.lua, finalize_batch.lua, stop_batch.lua, batch
creation, callback attempts), so one read sees the whole fleet."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import redis

from app.store import keys
from app.store.batches import batch_job
from app.tenancy import owner_of
from app.vocabulary import BatchStatus

#: Histogram bounds of the time to first token, in seconds.
TTFT_BOUNDS_S = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
#: Histogram bounds of an item's duration, in seconds.
DURATION_BOUNDS_S = (0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)
#: The extra KEYS and ARGV of commit_run.lua that record an item's end.
METRIC_KEYS = (keys.METRIC_COUNTERS, keys.METRIC_TTFT, keys.METRIC_DURATION, keys.METRIC_TTFT_RECENT)
METRIC_ARGS = (keys.METRIC_MINUTE_PREFIX, ",".join(map(str, TTFT_BOUNDS_S)), ",".join(map(str, DURATION_BOUNDS_S)))
#: Batches read to find the running ones (the active index holds running and recently ended ones).
ACTIVE_SCAN = 300


@dataclass(frozen=True)
class Histogram:
    #: (upper bound in seconds, observations at or below it), cumulative, ending with +Inf.
    buckets: list[tuple[float, int]]
    sum_s: float
    count: int


class MonitorStore:
    def __init__(self, *, client: redis.Redis) -> None:
        self.client = client

    # -- worker heartbeats ---------------------------------------------------------------------

    def heartbeat(self, owner: str, *, ttl_s: float, **fields: Any) -> None:
        """A worker process is alive (its hash expires `ttl_s` after its last heartbeat)."""
        seconds, micros = self.client.time()
        with self.client.pipeline(transaction=True) as pipe:
            pipe.hsetnx(keys.worker(owner), "started_us", seconds * 1_000_000 + micros)
            pipe.hset(keys.worker(owner), mapping={**fields, "seen_us": seconds * 1_000_000 + micros})
            pipe.pexpire(keys.worker(owner), max(1, int(ttl_s * 1000)))
            pipe.sadd(keys.WORKERS, owner)
            pipe.execute()

    def forget_worker(self, owner: str) -> None:
        """A worker process that stops cleanly leaves the list at once."""
        with self.client.pipeline(transaction=True) as pipe:
            pipe.delete(keys.worker(owner))
            pipe.srem(keys.WORKERS, owner)
            pipe.execute()

    def workers(self) -> list[dict[str, str]]:
        """The live workers' heartbeat hashes (each with its `id`), oldest first."""
        owners = sorted(self.client.smembers(keys.WORKERS))
        with self.client.pipeline(transaction=False) as pipe:
            for owner in owners:
                pipe.hgetall(keys.worker(owner))
            found = pipe.execute()
        gone = [owner for owner, fields in zip(owners, found, strict=True) if not fields]
        if gone:
            self.client.srem(keys.WORKERS, *gone)
        live = [{"id": owner, **fields} for owner, fields in zip(owners, found, strict=True) if fields]
        return sorted(live, key=lambda worker: int(worker.get("started_us") or 0))

    # -- metrics -------------------------------------------------------------------------------

    def counters(self) -> dict[str, int]:
        """Counter fields: `<name>` or `<name>|<label>=<value>`."""
        return {field: int(float(value)) for field, value in self.client.hgetall(keys.METRIC_COUNTERS).items()}

    def histograms(self) -> dict[str, Histogram]:
        with self.client.pipeline(transaction=False) as pipe:
            pipe.hgetall(keys.METRIC_TTFT)
            pipe.hgetall(keys.METRIC_DURATION)
            ttft, duration = pipe.execute()
        return {"ttft": _histogram(ttft, TTFT_BOUNDS_S), "duration": _histogram(duration, DURATION_BOUNDS_S)}

    def minutes(self, *, last: int) -> tuple[float, list[tuple[int, int, int]]]:
        """(Redis time in seconds, [(unix minute, finished, failed)] for the `last` minutes up
        to the current one, oldest first)."""
        seconds, micros = self.client.time()
        now = seconds + micros / 1_000_000
        current = int(now // 60)
        wanted = list(range(current - last + 1, current + 1))
        with self.client.pipeline(transaction=False) as pipe:
            for minute in wanted:
                pipe.hmget(keys.metric_minute(minute), ["finished", "failed"])
            found = pipe.execute()
        return now, [(minute, int(finished or 0), int(failed or 0))
                     for minute, (finished, failed) in zip(wanted, found, strict=True)]

    def recent_ttft_s(self) -> list[float]:
        return [float(value) for value in self.client.lrange(keys.METRIC_TTFT_RECENT, 0, -1)]

    # -- batches -------------------------------------------------------------------------------

    def batches(self, *, tenant: str, running_limit: int,
                recent_limit: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]], float]:
        """(the tenant's running batches, newest first; its most recent other batches, newest
        first; Redis time in seconds), as stored BatchJob dicts with `created_us`."""
        active = self.client.zrevrange(keys.ACTIVE_BATCHES, 0, ACTIVE_SCAN - 1)
        latest = self.client.zrevrange(keys.tenant_batches(tenant), 0, recent_limit + running_limit - 1)
        ids = list(dict.fromkeys([*active, *latest]))
        with self.client.pipeline(transaction=False) as pipe:
            for batch_id in ids:
                pipe.hgetall(keys.batch(batch_id))
            pipe.time()
            *found, (seconds, micros) = pipe.execute()
        # The active index holds every tenant's batches: keep only the caller's.
        stored = sorted((fields for fields in found if fields and owner_of(fields.get("created_by_id")) == tenant),
                        key=lambda f: int(f["created_us"]), reverse=True)
        running = [_with_created(f) for f in stored if f["status"] == BatchStatus.RUNNING][:running_limit]
        recent = [_with_created(f) for f in stored if f["status"] != BatchStatus.RUNNING][:recent_limit]
        return running, recent, seconds + micros / 1_000_000

    def batch_owners(self, batch_ids: list[str]) -> dict[str, str | None]:
        """The tenant of each batch; None for one that is not (or no longer) stored."""
        unique = list(dict.fromkeys(batch_ids))
        with self.client.pipeline(transaction=False) as pipe:
            for batch_id in unique:
                pipe.hget(keys.batch(batch_id), "created_by_id")
            found = pipe.execute()
        return {batch_id: None if owner is None else owner_of(owner)
                for batch_id, owner in zip(unique, found, strict=True)}


def _with_created(fields: dict[str, str]) -> dict[str, Any]:
    return {**batch_job(fields), "created_us": int(fields["created_us"])}


def _histogram(fields: dict[str, str], bounds: tuple[float, ...]) -> Histogram:
    buckets, running = [], 0
    for bound in bounds:
        running += int(fields.get(f"le={bound}") or 0)
        buckets.append((float(bound), running))
    count = running + int(fields.get("le=+Inf") or 0)
    buckets.append((float("inf"), count))
    return Histogram(buckets=buckets, sum_s=float(fields.get("sum") or 0), count=count)
