"""Per-key rate limits: calls per minute on every `/v1` route, and batch requests accepted per
hour. Counted by the `limits` library's sliding-window counters in the app's Redis, so every web
process (and every machine) shares one count per key. A throttled call gets 429 with `Retry-After`.

Only authenticated calls count: the hook runs after app.api.auth's, which answers 401 first, and
paths it leaves open (health probes, API documents, the dashboard page) are never limited. A
call with a key this process has seen before is counted in the round trip that looks the key up
(`call_rider`): an authenticated GET costs the lookup's round trip and its own reads, no more."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

import redis
from flask import Flask, Response, current_app, g, request
from limits import RateLimitItem, RateLimitItemPerHour, RateLimitItemPerMinute
from limits.storage import RedisStorage
from limits.strategies import SlidingWindowCounterRateLimiter

from app.api.errors import error_response, invalid_field
from app.store import keys
from app.store.api_keys import Rider

_EXTENSION = "batchline.rate_limits"
#: Set on `g` by app.api.auth when the call was counted with the key lookup: the script's reply.
_RIDDEN = "batchline_call_counted"
_NOT_RIDDEN = object()


class BatchRequestsThrottled(Exception):
    """The key has used up its batch requests for the hour."""

    def __init__(self, detail: str, *, retry_after_s: int) -> None:
        super().__init__(detail)
        self.detail = detail
        self.retry_after_s = retry_after_s


class CallsThrottled(Exception):
    """The caller has used up its calls for the minute."""

    def __init__(self, *, limit: RateLimitItem, retry_after_s: int) -> None:
        super().__init__(limit.amount)
        self.limit = limit
        self.retry_after_s = retry_after_s


@dataclass(frozen=True)
class RateLimits:
    """The `limits` library's sliding-window-counter strategy: two counters per key and window
    (O(1) in Redis whatever the limit, unlike moving-window's one entry per unit), and no burst of
    twice the limit at a window edge as fixed-window allows. Its keys are the ones flask-limiter
    wrote before (`calls/<who>/global`), so counts carry over an upgrade."""

    storage: RedisStorage
    strategy: SlidingWindowCounterRateLimiter
    #: None: no limit on calls.
    calls: RateLimitItem | None

    def call_identifiers(self, who: str) -> tuple[str, ...]:
        return ("calls", who, "global")

    def ride_call(self, pipe: redis.client.Pipeline, key_id: str) -> None:
        """Queue the count of one call by API key `key_id` (limits' own script, by its SHA)."""
        assert self.calls is not None
        key = self.calls.key_for(*self.call_identifiers(_key_identity(key_id)))
        script = self.storage.lua_acquire_sliding_window
        pipe.evalsha(script.sha, 2, self.storage.prefixed_key(self.storage._previous_window_key(key)),
                     self.storage.prefixed_key(self.storage._current_window_key(key)),
                     self.calls.amount, self.calls.get_expiry(), 1)


def install(app: Flask, *, redis_url: str) -> None:
    """Call after app.api.auth.install: the limits' hook must run after authentication."""
    settings = app.extensions["batchline"].settings
    per_minute = settings.rate_limit_per_minute
    storage = RedisStorage(_storage_uri(redis_url), key_prefix=keys.RATE_LIMITS, health_check_interval=30)
    app.extensions[_EXTENSION] = RateLimits(
        storage=storage, strategy=SlidingWindowCounterRateLimiter(storage),
        calls=RateLimitItemPerMinute(per_minute) if per_minute else None)
    app.before_request(_count_call)
    app.register_error_handler(CallsThrottled, _calls_throttled)
    app.register_error_handler(BatchRequestsThrottled, _batch_requests_throttled)


def call_rider() -> Rider | None:
    """What counts this call along with the key lookup (None: calls are not limited)."""
    limits: RateLimits = current_app.extensions[_EXTENSION]
    return limits.ride_call if limits.calls is not None else None


def counted_with_lookup(reply: Any) -> None:
    """The reply of `call_rider`'s command (app.api.auth passes it on)."""
    setattr(g, _RIDDEN, reply)


def _count_call() -> None:
    if g.get("principal") is None:  # a path that needs no key
        return
    limits: RateLimits = current_app.extensions[_EXTENSION]
    if limits.calls is None:
        return
    identifiers = limits.call_identifiers(limit_key())
    reply = g.pop(_RIDDEN, _NOT_RIDDEN)
    if isinstance(reply, redis.exceptions.NoScriptError) or reply is _NOT_RIDDEN:
        allowed = limits.strategy.hit(limits.calls, *identifiers)  # loads the script when Redis lost it
    elif isinstance(reply, Exception):
        raise reply
    else:
        allowed = bool(reply)
    if not allowed:
        reset_time = limits.strategy.get_window_stats(limits.calls, *identifiers).reset_time
        raise CallsThrottled(limit=limits.calls, retry_after_s=_seconds_until(reset_time))


def _key_identity(key_id: str) -> str:
    return f"key:{key_id}"


def limit_key() -> str:
    """The API key's id; with authentication off (no key), the caller's address."""
    key_id = g.principal.key_id
    return _key_identity(key_id) if key_id else f"addr:{request.remote_addr}"


def charge_batch_requests(count: int) -> None:
    """Count `count` accepted batch requests against the caller's hourly budget, or raise
    BatchRequestsThrottled (nothing is counted then). A batch larger than the whole budget is a
    422: waiting would never let it in."""
    per_hour = current_app.extensions["batchline"].settings.batch_requests_per_hour
    if per_hour == 0:
        return
    if count > per_hour:
        raise invalid_field(["requests"], f"{count} requests are more than the {per_hour} an API key may submit per "
                                          "hour (BATCHLINE_BATCH_REQUESTS_PER_HOUR); split the batch")
    strategy = current_app.extensions[_EXTENSION].strategy
    item, identifiers = _batch_requests_window(per_hour)
    if strategy.hit(item, *identifiers, cost=count):
        return
    retry_after_s = _seconds_until(strategy.get_window_stats(item, *identifiers).reset_time)
    raise BatchRequestsThrottled(
        f"Rate limit: {per_hour} batch requests per hour per API key (BATCHLINE_BATCH_REQUESTS_PER_HOUR) would be "
        f"exceeded by these {count}; retry in {retry_after_s} s, or submit fewer requests.",
        retry_after_s=retry_after_s)


def refund_batch_requests(count: int) -> None:
    """Give back `count` requests charged by charge_batch_requests for a batch that was not stored
    after all (a concurrent create with the same Idempotency-Key stored its batch first)."""
    per_hour = current_app.extensions["batchline"].settings.batch_requests_per_hour
    if count and per_hour:
        item, identifiers = _batch_requests_window(per_hour)
        current_app.extensions[_EXTENSION].strategy.hit(item, *identifiers, cost=-count)


def _batch_requests_window(per_hour: int) -> tuple[RateLimitItemPerHour, tuple[str, str]]:
    """The caller's hourly budget of batch requests: the limit and its identifiers."""
    return RateLimitItemPerHour(per_hour), ("batch_requests", limit_key())


def _storage_uri(redis_url: str) -> str:
    """limits names a Unix socket `redis+unix://`; redis-py and REDIS_URL say `unix://`."""
    return "redis+" + redis_url if redis_url.startswith("unix://") else redis_url


def _seconds_until(reset_time: float) -> int:
    return max(1, math.ceil(reset_time - time.time()))


def _calls_throttled(error: CallsThrottled) -> Response:
    return _too_many(
        f"Rate limit: {error.limit.amount} calls per minute per API key (BATCHLINE_RATE_LIMIT_PER_MINUTE) reached; "
        f"retry in {error.retry_after_s} s.", error.retry_after_s)


def _batch_requests_throttled(error: BatchRequestsThrottled) -> Response:
    return _too_many(error.detail, error.retry_after_s)


def _too_many(detail: str, retry_after_s: int) -> Response:
    response = error_response(429, detail)
    response.headers["Retry-After"] = str(retry_after_s)
    return response
