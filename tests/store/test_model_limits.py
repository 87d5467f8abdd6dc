"""The fleet-wide model limit scripts (app/lua/limit_*.lua) on a real Redis: the stream semaphore
and its leases, the request and token windows, and the fleet pause."""

from __future__ import annotations

import time

from app.model_limits import ModelLimit
from app.store import Store, keys
from app.store.model_limits import waiting_for

BUCKET = "openai/gpt-4o-mini"


def _acquire(store: Store, call_id: str, limit: ModelLimit, *, tokens: int = 0, lease_s: float = 30.0,
             window_s: float = 60.0):
    return store.model_limits.acquire(BUCKET, call_id, limit=limit, tokens=tokens, lease_s=lease_s,
                                      window_s=window_s)


def _admitted_within(store: Store, call_id: str, limit: ModelLimit, *, timeout_s: float, **kwargs) -> float:
    """Seconds until the call is admitted (polling); fails the test after timeout_s."""
    started = time.monotonic()
    while not _acquire(store, call_id, limit, **kwargs).admitted:
        assert time.monotonic() - started < timeout_s, f"{call_id} not admitted within {timeout_s} s"
        time.sleep(0.02)
    return time.monotonic() - started


def test_given_a_limit_of_two_streams_when_three_calls_ask_then_the_third_waits_until_one_is_released(store):
    limit = ModelLimit(max_streams=2)
    assert _acquire(store, "a", limit).admitted
    assert _acquire(store, "b", limit).admitted
    refused = _acquire(store, "c", limit)
    assert (refused.admitted, refused.reason, refused.wait_us) == (False, "streams", None)
    assert store.model_limits.release(BUCKET, "a", tokens_used=None)
    assert _acquire(store, "c", limit).admitted
    assert not _acquire(store, "d", limit).admitted


def test_given_a_stream_lease_that_is_not_renewed_when_it_lapses_then_its_stream_goes_to_another_call(store):
    limit = ModelLimit(max_streams=1)
    started = time.monotonic()
    assert _acquire(store, "dead-worker", limit, lease_s=0.3).admitted
    waited_s = _admitted_within(store, "next", limit, timeout_s=5.0)
    assert time.monotonic() - started >= 0.29  # not before the lease lapsed
    assert waited_s < 2.0
    assert not store.model_limits.release(BUCKET, "dead-worker", tokens_used=None)  # it had lapsed


def test_given_a_renewed_lease_when_its_first_term_passes_then_the_stream_stays_taken(store):
    limit = ModelLimit(max_streams=1)
    assert _acquire(store, "streaming", limit, lease_s=0.3).admitted
    assert store.model_limits.renew(BUCKET, ["streaming"], lease_s=10.0) == 1
    time.sleep(0.5)
    assert not _acquire(store, "other", limit, lease_s=0.3).admitted


def test_given_three_requests_per_window_when_a_fourth_asks_then_it_waits_until_the_oldest_leaves_the_window(store):
    limit = ModelLimit(requests_per_minute=3)
    assert _acquire(store, "a", limit, window_s=0.5).admitted
    time.sleep(0.25)  # so that b and c are still in the window when a leaves it
    for call_id in ("b", "c"):
        assert _acquire(store, call_id, limit, window_s=0.5).admitted
    refused = _acquire(store, "d", limit, window_s=0.5)
    assert (refused.admitted, refused.reason) == (False, "requests")
    assert 0 < refused.wait_us <= 250_000
    time.sleep(refused.wait_us / 1_000_000)
    assert _acquire(store, "d", limit, window_s=0.5).admitted
    assert not _acquire(store, "e", limit, window_s=0.5).admitted  # b and c are still in the window


def test_given_a_token_budget_when_a_call_would_exceed_it_then_it_waits_and_the_usage_after_a_call_corrects_it(store):
    limit = ModelLimit(tokens_per_minute=100)
    assert _acquire(store, "a", limit, tokens=60).admitted
    refused = _acquire(store, "b", limit, tokens=60)
    assert (refused.admitted, refused.reason) == (False, "tokens")
    assert 59_000_000 < refused.wait_us <= 60_000_000
    store.model_limits.release(BUCKET, "a", tokens_used=20)  # it used less than estimated
    assert _acquire(store, "b", limit, tokens=60).admitted
    assert store.client.hget(keys.model_limit(BUCKET, "tokens"), "sum") == "80"


def test_given_an_empty_window_when_one_call_is_larger_than_the_whole_token_budget_then_it_runs_alone(store):
    limit = ModelLimit(tokens_per_minute=100)
    assert _acquire(store, "huge", limit, tokens=500).admitted
    assert not _acquire(store, "small", limit, tokens=1).admitted


def test_given_a_pause_when_calls_ask_then_none_is_admitted_before_it_ends_and_a_shorter_pause_does_not_cut_it(store):
    limit = ModelLimit()
    resume_us, now_us = store.model_limits.pause(BUCKET, seconds=2.0)
    assert resume_us - now_us == 2_000_000
    store.model_limits.pause(BUCKET, seconds=0.1)
    refused = _acquire(store, "a", limit)
    assert (refused.admitted, refused.reason) == (False, "paused")
    assert 1_800_000 < refused.wait_us <= 2_000_000
    assert store.client.pttl(keys.model_limit(BUCKET, "pause")) > 1500  # it cleans itself up
    assert _acquire(store, "other-model", limit).admitted is False  # same bucket: still paused


def test_given_a_refused_call_then_it_leaves_nothing_counted(store):
    limit = ModelLimit(max_streams=1, requests_per_minute=10)
    assert _acquire(store, "a", limit).admitted
    assert not _acquire(store, "b", limit).admitted
    assert store.client.zcard(keys.model_limit(BUCKET, "window")) == 1


def test_given_a_waiting_mark_when_another_owner_took_the_item_over_then_it_is_not_shown(store):
    store.model_limits.mark_waiting("batch_item-1", reason="model_capacity", owner="host:1:abc")
    fields = store.client.hgetall(keys.item("batch_item-1"))
    assert waiting_for(fields | {"lease_owner": "host:1:abc"}) == "model_capacity"
    assert waiting_for(fields | {"lease_owner": "host:2:def"}) is None
    store.model_limits.clear_waiting("batch_item-1")
    assert waiting_for(store.client.hgetall(keys.item("batch_item-1")) | {"lease_owner": "host:1:abc"}) is None
