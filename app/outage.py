"""Redis outages, told once: each process logs one WARNING when Redis goes and one INFO when it
comes back, however many requests, items, consumers and loops notice in between."""

from __future__ import annotations

import logging
import threading
import time

logger = logging.getLogger("batchline.redis")

#: What Dramatiq logs, per consumer thread, about once a second while Redis is away; the
#: outage's own two lines say it once.
_DRAMATIQ_CONNECTION_LINES = (
    "Consumer encountered a connection error",
    "Restarting consumer in",
    "due to a connection error",
    "Failed to requeue messages",
)


#: What a Redis that is there but refuses writes for now means, by the error it answers with.
_REFUSING_WRITES = {
    "ReadOnlyError": "Redis refuses writes (a replica, until a failover promotes it): work pauses and resumes by "
                     "itself when it takes writes again",
    "OutOfMemoryError": "Redis refuses writes (its maxmemory is reached): work pauses and resumes by itself when "
                        "it has room again (raise maxmemory, or delete old batches)",
}


class RedisOutage:
    """Process-wide state of the connection to Redis (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._down_since: float | None = None

    @property
    def down(self) -> bool:
        return self._down_since is not None

    def lost(self, error: BaseException | str) -> None:
        with self._lock:
            if self._down_since is not None:
                return
            self._down_since = time.monotonic()
        reason = error if isinstance(error, str) else type(error).__name__
        logger.warning(_REFUSING_WRITES.get(reason)
                       or f"Redis is unreachable ({reason}): work pauses and resumes by itself when it is back")

    def back(self) -> None:
        with self._lock:
            if self._down_since is None:
                return
            lasted_s, self._down_since = time.monotonic() - self._down_since, None
        logger.info("Redis is reachable again after %.1f s", lasted_s)


#: The one per process.
outage = RedisOutage()


class DramatiqConnectionNoise(logging.Filter):
    """Turns Dramatiq's per-second connection-error lines into the outage's one WARNING."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if any(line in message for line in _DRAMATIQ_CONNECTION_LINES):
            if "Restarting consumer" not in message:
                outage.lost("the broker connection failed")
            return False
        return True


def quiet_dramatiq_connection_errors() -> None:
    """Install the filter on the handlers that print Dramatiq's lines (logger filters do not
    apply to records of child loggers, handler filters do)."""
    noise = DramatiqConnectionNoise()
    for handler in logging.getLogger().handlers:
        handler.addFilter(noise)
