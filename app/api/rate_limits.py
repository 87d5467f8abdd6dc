"""Per-key rate limits: calls per minute on every `/v1` route, and batch requests accepted per
hour. Counted by flask-limiter in the app's Redis, so every web process (and every machine)
shares one count per key. A throttled call gets 429 with `Retry-After`.

Only authenticated calls count: the hook runs after app.api.auth's, which answers 401 first, and
paths it leaves open (health probes, API documents, the dashboard page) are never limited."""

from __future__ import annotations

import logging
import math
import time

from flask import Flask, Response, current_app, g, request
from flask_limiter import Limiter, RateLimitExceeded
from limits import RateLimitItem, RateLimitItemPerHour

from app.api.errors import error_response, invalid_field
from app.store import keys

#: sliding-window-counter: two counters per key and window (O(1) in Redis whatever the limit,
#: unlike moving-window's one entry per unit), and no burst of twice the limit at a window edge
#: as fixed-window allows.
STRATEGY = "sliding-window-counter"
#: flask-limiter's logger: it logs every breach at INFO, which a client retrying in a loop
#: would turn into a flood.
LIMITER_LOGGER = "flask-limiter"
_EXTENSION = "batchline.rate_limits"


class BatchRequestsThrottled(Exception):
    """The key has used up its batch requests for the hour."""

    def __init__(self, detail: str, *, retry_after_s: int) -> None:
        super().__init__(detail)
        self.detail = detail
        self.retry_after_s = retry_after_s


def install(app: Flask, *, redis_url: str) -> None:
    """Call after app.api.auth.install: the limiter's hook must run after authentication."""
    settings = app.extensions["batchline"].settings
    logging.getLogger(LIMITER_LOGGER).setLevel(logging.WARNING)
    per_minute = settings.rate_limit_per_minute
    limiter = Limiter(
        key_func=limit_key,
        application_limits=[f"{per_minute} per minute"] if per_minute else [],
        strategy=STRATEGY,
        storage_uri=_storage_uri(redis_url),
        storage_options={"key_prefix": keys.RATE_LIMITS, "health_check_interval": 30},
        key_prefix="calls",
        # A storage error (Redis down) propagates to app.api.errors, which answers 503.
        swallow_errors=False,
        headers_enabled=False,
    )
    limiter.request_filter(_not_authenticated)
    limiter.init_app(app)
    app.extensions[_EXTENSION] = limiter
    app.register_error_handler(RateLimitExceeded, _calls_throttled)
    app.register_error_handler(BatchRequestsThrottled, _batch_requests_throttled)


def limit_key() -> str:
    """The API key's id; with authentication off (no key), the caller's address."""
    key_id = g.principal.key_id
    return f"key:{key_id}" if key_id else f"addr:{request.remote_addr}"


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
    limiter: Limiter = current_app.extensions[_EXTENSION]
    item = RateLimitItemPerHour(per_hour)
    identifiers = ("batch_requests", limit_key())
    if limiter.limiter.hit(item, *identifiers, cost=count):
        return
    retry_after_s = _seconds_until(limiter.limiter.get_window_stats(item, *identifiers).reset_time)
    raise BatchRequestsThrottled(
        f"Rate limit: {per_hour} batch requests per hour per API key (BATCHLINE_BATCH_REQUESTS_PER_HOUR) would be "
        f"exceeded by these {count}; retry in {retry_after_s} s, or submit fewer requests.",
        retry_after_s=retry_after_s)


def _not_authenticated() -> bool:
    """Exempt: no principal means a path that needs no key."""
    return g.get("principal") is None


def _storage_uri(redis_url: str) -> str:
    """limits names a Unix socket `redis+unix://`; redis-py and REDIS_URL say `unix://`."""
    return "redis+" + redis_url if redis_url.startswith("unix://") else redis_url


def _seconds_until(reset_time: float) -> int:
    return max(1, math.ceil(reset_time - time.time()))


def _calls_throttled(error: RateLimitExceeded) -> Response:
    limit: RateLimitItem = error.limit.limit
    retry_after_s = _seconds_until(current_app.extensions[_EXTENSION].current_limit.window.reset_time)
    return _too_many(
        f"Rate limit: {limit.amount} calls per minute per API key (BATCHLINE_RATE_LIMIT_PER_MINUTE) reached; retry "
        f"in {retry_after_s} s.", retry_after_s)


def _batch_requests_throttled(error: BatchRequestsThrottled) -> Response:
    return _too_many(error.detail, error.retry_after_s)


def _too_many(detail: str, retry_after_s: int) -> Response:
    response = error_response(429, detail)
    response.headers["Retry-After"] = str(retry_after_s)
    return response
