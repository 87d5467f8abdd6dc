"""Waiting out a Redis outage instead of failing the work in hand."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import TypeVar

import redis

from app.outage import outage

T = TypeVar("T")

#: Errors that mean "Redis is not there right now" (BusyLoadingError, while a restarted Redis
#: loads its data, is a ConnectionError), or does not take writes right now: ReadOnlyError, a
#: failover in progress (the Redis reached is a replica until it is promoted), and
#: OutOfMemoryError, its `maxmemory` reached (until keys expire or an operator makes room).
#: Anything else is a real error.
UNAVAILABLE = (redis.ConnectionError, redis.TimeoutError, redis.ReadOnlyError, redis.exceptions.OutOfMemoryError)
#: How Redis 6 words a script's write it refused ("... -READONLY You can't write against a read
#: only replica.", "... -OOM command not allowed ..."), with the error Redis 7 and a plain
#: command give instead. A script refused at its first write has written nothing.
_REFUSED_SCRIPT_WRITES = (("-READONLY ", redis.ReadOnlyError), ("-OOM ", redis.exceptions.OutOfMemoryError))


def as_unavailable(error: Exception) -> Exception:
    """A script's write refused because Redis does not take writes right now, as the error of
    UNAVAILABLE that says so; any other error as it is."""
    if isinstance(error, redis.ResponseError) and not isinstance(error, UNAVAILABLE):
        message = str(error)
        for marker, kind in _REFUSED_SCRIPT_WRITES:
            if marker in message:
                return kind(message)
    return error


#: First and longest pause between two tries.
FIRST_DELAY_S = 0.1
MAX_DELAY_S = 2.0


class RedisRetry:
    """Calls a Redis operation until Redis answers, or until `give_up()` says to stop waiting or
    `max_wait_s` has passed (then the last error is raised). Safe only for operations that may
    run twice: Batchline's scripts are (a commit applied before its reply was lost answers
    "already committed")."""

    def __init__(self, *, give_up: Callable[[], bool], max_wait_s: float | None = None) -> None:
        self.give_up = give_up
        self.max_wait_s = max_wait_s

    async def call(self, operation: Callable[..., T], *args: object, **kwargs: object) -> T:
        for delay, waited_s in self._pauses():
            try:
                return self._succeeded(operation(*args, **kwargs))
            except UNAVAILABLE as exc:
                self._failed(exc, waited_s)
            await asyncio.sleep(delay)
        raise AssertionError("unreachable")

    async def wait_for(self, operation: Callable[[], Awaitable[T]]) -> T:
        """The same, for an operation that is itself awaited (e.g. a commit batched with others)."""
        for delay, waited_s in self._pauses():
            try:
                return self._succeeded(await operation())
            except UNAVAILABLE as exc:
                self._failed(exc, waited_s)
            await asyncio.sleep(delay)
        raise AssertionError("unreachable")

    def call_blocking(self, operation: Callable[..., T], *args: object, **kwargs: object) -> T:
        """The same, for a thread that may block (a web request)."""
        for delay, waited_s in self._pauses():
            try:
                return self._succeeded(operation(*args, **kwargs))
            except UNAVAILABLE as exc:
                self._failed(exc, waited_s)
            time.sleep(delay)
        raise AssertionError("unreachable")

    @staticmethod
    def _pauses() -> Iterator[tuple[float, float]]:
        """(pause before the next try, time waited so far)."""
        delay, waited_s = FIRST_DELAY_S, 0.0
        while True:
            yield delay, waited_s
            waited_s += delay
            delay = min(delay * 2, MAX_DELAY_S)

    def _failed(self, error: BaseException, waited_s: float) -> None:
        outage.lost(error)
        if self.give_up() or (self.max_wait_s is not None and waited_s >= self.max_wait_s):
            raise error

    @staticmethod
    def _succeeded(result: T) -> T:
        outage.back()
        return result
