"""Fleet-wide model limits in Redis: a stream semaphore whose leases lapse when their worker dies,
sliding 60 s windows of requests and tokens, and a pause a provider's 429 sets for every process
(app/lua/limit_*.lua; the Redis clock throughout, never a worker's). Also the `waiting` mark an
item carries while it waits for that capacity."""

from __future__ import annotations

from dataclasses import dataclass

import redis

from app.model_limits import RATE_WINDOW_S, ModelLimit
from app.store import keys
from app.store.scripts import Scripts

#: The item hash field that says what a running item waits for: "<reason> <lease owner>", so a mark
#: left by a worker that died while waiting is not shown once another owner takes the item over.
WAITING_FIELD = "waiting"


@dataclass(frozen=True)
class Admission:
    admitted: bool
    #: How long until the call may be admitted, in microseconds; None when unknown (poll).
    wait_us: int | None
    #: paused | streams | requests | tokens ('' when admitted)
    reason: str
    now_us: int


class ModelLimitStore:
    def __init__(self, *, client: redis.Redis, scripts: Scripts) -> None:
        self.client = client
        self.scripts = scripts

    def acquire(self, bucket: str, call_id: str, *, limit: ModelLimit, tokens: int, lease_s: float,
                window_s: float = RATE_WINDOW_S) -> Admission:
        """Admit the call (taking a stream lease and a place in the windows) or say why not."""
        admitted, wait_us, reason, now_us = self.scripts.limit_acquire(
            keys=[keys.model_limit(bucket, "pause"), keys.model_limit(bucket, "streams"),
                  keys.model_limit(bucket, "window"), keys.model_limit(bucket, "tokens")],
            args=[call_id, limit.max_streams or 0, limit.requests_per_minute or 0, limit.tokens_per_minute or 0,
                  max(0, tokens), int(lease_s * 1_000_000), int(window_s * 1_000_000)])
        wait = int(wait_us)
        return Admission(admitted == 1, None if wait < 0 else wait, reason, int(now_us))

    def renew(self, bucket: str, call_ids: list[str], *, lease_s: float) -> int:
        """Extend the stream leases of calls still streaming; how many were still held."""
        if not call_ids:
            return 0
        return self.scripts.limit_renew(keys=[keys.model_limit(bucket, "streams")],
                                        args=[int(lease_s * 1_000_000), *call_ids])

    def release(self, bucket: str, call_id: str, *, tokens_used: int | None) -> bool:
        """The call ended: free its stream; with its usage known, count what it used instead of its estimate."""
        return bool(self.scripts.limit_release(
            keys=[keys.model_limit(bucket, "streams"), keys.model_limit(bucket, "tokens")],
            args=[call_id, "" if tokens_used is None else max(0, tokens_used)]))

    def pause(self, bucket: str, *, seconds: float) -> tuple[int, int]:
        """No call of this model is admitted, in any process, for `seconds` from now on the Redis
        clock (a longer pause already set stays). Returns (resume_us, now_us)."""
        resume_us, now_us = self.scripts.limit_pause(keys=[keys.model_limit(bucket, "pause")],
                                                     args=[int(seconds * 1_000_000)])
        return int(resume_us), int(now_us)

    def mark_waiting(self, item_id: str, *, reason: str, owner: str) -> None:
        self.client.hset(keys.item(item_id), WAITING_FIELD, f"{reason} {owner}")

    def clear_waiting(self, item_id: str) -> None:
        self.client.hdel(keys.item(item_id), WAITING_FIELD)


def waiting_for(fields: dict[str, str]) -> str | None:
    """What a stored item waits for, if its current owner marked it (see WAITING_FIELD)."""
    reason, _, owner = (fields.get(WAITING_FIELD) or "").partition(" ")
    return reason if reason and owner == fields.get("lease_owner") else None
