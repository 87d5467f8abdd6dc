"""Every callback delivery attempt, kept on a real Redis in a capped list per batch."""

from __future__ import annotations

from app.store import Store
from app.store.callbacks import MAX_ATTEMPTS_KEPT

BATCH_ID = "job-1"


def _record(store: Store, n: int, *, keep: int = 8, status_code: int | None = 500, error: str | None = "HTTP 500",
            delivered: bool = False) -> int:
    return store.callbacks.record_attempt(
        BATCH_ID, sent_us=1_764_460_800_000_000 + n * 1_000_123, status_code=status_code, error=error,
        delivered=delivered, url="https://hook.example/x", address="93.184.216.34", duration_ms=10 + n,
        webhook_id=f"msg_{BATCH_ID}", keep=keep)


def test_given_a_failed_then_a_delivered_attempt_when_listed_then_both_are_there_oldest_first_with_every_field(store):
    assert store.callbacks.attempt_log(BATCH_ID) == []
    assert _record(store, 0) == 1
    assert _record(store, 1, status_code=204, error=None, delivered=True) == 2

    assert store.callbacks.attempt_log(BATCH_ID) == [
        {"attempt": 1, "sent_at": "2025-11-30T00:00:00.000000Z", "url": "https://hook.example/x",
         "address": "93.184.216.34", "status_code": 500, "error": "HTTP 500", "duration_ms": 10,
         "webhook_id": "msg_job-1"},
        {"attempt": 2, "sent_at": "2025-11-30T00:00:01.000123Z", "url": "https://hook.example/x",
         "address": "93.184.216.34", "status_code": 204, "error": None, "duration_ms": 11,
         "webhook_id": "msg_job-1"},
    ]
    assert store.callbacks.attempts(BATCH_ID) == 2


def test_given_more_attempts_than_kept_when_recorded_then_the_list_holds_only_the_most_recent_ones(store):
    for n in range(5):
        _record(store, n, keep=3)

    assert [each["attempt"] for each in store.callbacks.attempt_log(BATCH_ID)] == [3, 4, 5]
    assert store.callbacks.attempts(BATCH_ID) == 5


def test_given_a_bound_above_the_ceiling_when_recorded_then_the_ceiling_still_caps_the_list(store):
    for n in range(MAX_ATTEMPTS_KEPT + 2):
        _record(store, n, keep=10 * MAX_ATTEMPTS_KEPT)

    log = store.callbacks.attempt_log(BATCH_ID)
    assert len(log) == MAX_ATTEMPTS_KEPT and log[-1]["attempt"] == MAX_ATTEMPTS_KEPT + 2
