"""A batch's callback: who may queue it, who delivers it, and what each attempt gave."""

from __future__ import annotations

import secrets

import redis

from app.store import keys
from app.store.scripts import Scripts


class CallbackStore:
    def __init__(self, *, client: redis.Redis, scripts: Scripts) -> None:
        self.client = client
        self.scripts = scripts

    def owed(self, batch_id: str) -> bool:
        """The batch has a callback URL and no delivery has succeeded yet."""
        callback_url, delivered = self.client.hmget(keys.batch(batch_id), ["callback_url", "callback_delivered"])
        return bool(callback_url) and delivered != "1"

    def claim_queueing(self, batch_id: str) -> bool:
        """True for the one caller that gets to queue the batch's callback."""
        return bool(self.client.hsetnx(keys.batch(batch_id), "callback_queued", 1))

    def unclaim_queueing(self, batch_id: str) -> None:
        self.client.hdel(keys.batch(batch_id), "callback_queued")

    def record_message(self, batch_id: str, *, message_id: str) -> None:
        """The message that carries the delivery (the sweep checks it is still alive)."""
        self.client.hset(keys.batch(batch_id), mapping={"callback_queued": 1, "callback_message_id": message_id})

    def record_attempt(self, batch_id: str, *, sent_us: int, status_code: int | None, error: str | None,
                       delivered: bool) -> int:
        """Record one delivery attempt; returns how many attempts the batch's callback had."""
        with self.client.pipeline(transaction=True) as pipe:
            pipe.hset(keys.batch(batch_id), mapping={
                "callback_sent_us": sent_us,
                "callback_status_code": "" if status_code is None else status_code,
                "callback_error": error or "",
                "callback_delivered": int(delivered),
            })
            pipe.hincrby(keys.batch(batch_id), "callback_attempts", 1)
            pipe.hincrby(keys.METRIC_COUNTERS,
                         f"callback_attempts_total|outcome={'delivered' if delivered else 'failed'}", 1)
            return pipe.execute()[1]

    def attempts(self, batch_id: str) -> int:
        return int(self.client.hget(keys.batch(batch_id), "callback_attempts") or 0)

    def lock(self, batch_id: str, *, ttl_s: float) -> str | None:
        """Taken by the one delivery under way (it expires should its holder die); returns the
        holder's token, or None when another delivery holds it."""
        token = secrets.token_hex(8)
        taken = self.client.set(keys.callback_lock(batch_id), token, nx=True, ex=max(1, int(ttl_s)))
        return token if taken else None

    def unlock(self, batch_id: str, *, token: str) -> bool:
        """Release the lock only if this holder still has it."""
        return bool(self.scripts.unlock_if_owner(keys=[keys.callback_lock(batch_id)], args=[token]))
