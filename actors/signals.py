"""A worker's SIGTERM, delivered twice, must still mean "stop gracefully"."""

from __future__ import annotations

import signal
import time

#: A second SIGTERM this soon after the first is the same stop request delivered twice.
DUPLICATE_SIGNAL_WINDOW_S = 2.0


def absorb_duplicate_sigterm() -> None:
    """Process managers (honcho, systemd with KillMode=control-group) signal the whole process
    group, and the dramatiq main process forwards the same SIGTERM to its workers: a worker gets
    it twice at once and takes the second as "kill now", skipping the graceful stop that gives
    items back. A second SIGTERM within a moment of the first is the same request; ignore it."""
    previous = signal.getsignal(signal.SIGTERM)
    if not callable(previous):
        return
    first_at: float | None = None

    def handler(signum: int, frame: object) -> None:
        nonlocal first_at
        now = time.monotonic()
        if first_at is not None and now - first_at < DUPLICATE_SIGNAL_WINDOW_S:
            return
        first_at = first_at or now
        previous(signum, frame)

    signal.signal(signal.SIGTERM, handler)
