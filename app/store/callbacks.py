"""A batch's callback: who may queue it, who delivers it, and what each attempt gave."""

from __future__ import annotations

import json
import secrets
from typing import Any

import redis

from app.ids import iso_from_ns
from app.store import keys
from app.store.scripts import Scripts

#: Ceiling of a batch's list of attempts, whatever bound its caller asks for (each entry is well
#: under 1 KB: the URL is at most 2,048 characters and the error is cut short).
MAX_ATTEMPTS_KEPT = 100
#: What an attempt records besides its number and time.
ATTEMPT_FIELDS = ("url", "address", "status_code", "error", "duration_ms", "webhook_id")


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
                       delivered: bool, url: str | None = None, address: str | None = None,
                       duration_ms: int | None = None, webhook_id: str | None = None,
                       keep: int = MAX_ATTEMPTS_KEPT) -> int:
        """Record one delivery attempt, on the batch (the latest) and in its list of attempts (the
        `keep` most recent); returns how many attempts the batch's callback had."""
        entry = json.dumps({"sent_us": sent_us, "url": url, "address": address, "status_code": status_code,
                            "error": error, "duration_ms": duration_ms, "webhook_id": webhook_id},
                           separators=(",", ":"))
        outcome = "delivered" if delivered else "failed"
        return int(self.scripts.record_callback_attempt(
            keys=[keys.batch(batch_id), keys.callback_attempts(batch_id), keys.METRIC_COUNTERS],
            args=[sent_us, "" if status_code is None else status_code, error or "", int(delivered), entry,
                  max(1, min(keep, MAX_ATTEMPTS_KEPT)), f"callback_attempts_total|outcome={outcome}"]))

    def attempt_log(self, batch_id: str) -> list[dict[str, Any]]:
        """The batch's recorded delivery attempts, oldest first."""
        attempts = []
        for raw in self.client.lrange(keys.callback_attempts(batch_id), 0, -1):
            entry = json.loads(raw)
            attempts.append({"attempt": entry["attempt"], "sent_at": iso_from_ns(entry["sent_us"] * 1000),
                             **{name: entry.get(name) for name in ATTEMPT_FIELDS}})
        return attempts

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
