"""The reconciler's own state: the lease that lets one process sweep at a time, and what the last
sweep (and all sweeps) repaired, for monitoring."""

from __future__ import annotations

import redis

from app.store import keys


class SweepStore:
    def __init__(self, *, client: redis.Redis) -> None:
        self.client = client

    def try_lease(self, *, owner: str, ttl_s: float) -> bool:
        """True when this owner may sweep now. The lease is left to expire, not released, so
        sweeps across the fleet are at least `ttl_s` apart."""
        return bool(self.client.set(keys.SWEEP_LEASE, owner, nx=True, px=max(1, int(ttl_s * 1000))))

    def record(self, *, owner: str, finished_us: int, duration_ms: float, repairs: dict[str, int]) -> None:
        with self.client.pipeline(transaction=True) as pipe:
            pipe.delete(keys.SWEEP_LAST)
            pipe.hset(keys.SWEEP_LAST, mapping={"owner": owner, "finished_us": finished_us,
                                                "duration_ms": round(duration_ms, 3), **repairs})
            for name, count in repairs.items():
                if count:
                    pipe.hincrby(keys.SWEEP_TOTALS, name, count)
            pipe.execute()

    def last(self) -> dict[str, str]:
        return self.client.hgetall(keys.SWEEP_LAST)

    def totals(self) -> dict[str, int]:
        return {name: int(count) for name, count in self.client.hgetall(keys.SWEEP_TOTALS).items()}
