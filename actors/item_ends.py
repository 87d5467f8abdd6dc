"""How a chunk's items leave a worker, and the retries a chunk ends with when some were given
back (actors/runtime.py raises them; actors/pipeline.py's retry policy reads them)."""

from __future__ import annotations

import enum

import dramatiq


class ItemsReleased(dramatiq.Retry):
    """The worker is shutting down and gave this chunk's unfinished items back: the chunk is
    retried at once, elsewhere (a Retry, so Dramatiq logs no traceback for it)."""

    def __init__(self, message: str, *, delay_ms: int = 0) -> None:
        super().__init__(message, delay=delay_ms)


class ItemsWaiting(ItemsReleased):
    """Items of this chunk waited too long for a model's capacity before their first call and were
    given back: the chunk is retried later, and no thread is held meanwhile."""


class ItemsUnsettled(RuntimeError):
    """An item of this chunk could be neither ended (not even with `error`) nor given back: the
    chunk fails, so that it stays in flight and is retried (Dramatiq's retries, then the sweep
    re-sends the dead letter). Acked, it would leave the item pending with no message to run it."""


class ItemEnd(enum.Enum):
    """How a chunk's item left this worker."""

    #: it ended (or another owner runs it): nothing left to do here
    DONE = "done"
    #: given back because the worker is shutting down
    RELEASED = "released"
    #: given back while it waited for model capacity
    WAITING = "waiting"
    #: neither ended nor given back (the fault outlasted its error handling): the chunk is retried
    UNSETTLED = "unsettled"
