"""The lazy fan-out's claim (app/lua/claim_chunks.lua) on a real Redis: a batch never has more
chunks in flight than its budget, whatever finishes twice or races."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest
import redis

from app.schemas.agents import CreateAgent
from app.schemas.batches import LettaBatchRequest
from app.store import Store, connect, keys


def _batch(store: Store, count: int) -> str:
    agent = store.agents.create(CreateAgent(model="simulated/echo"))
    requests = [LettaBatchRequest(agent_id=agent["id"], input=f"q{i}") for i in range(count)]
    batch_id, _ = store.batches.create(requests=requests, metadata=None, completion_window_s=3600, callback_url=None)
    return batch_id


def _ledger(store: Store, batch_id: str) -> list[int]:
    return sorted(int(start) for start in store.client.hkeys(keys.batch_chunks(batch_id)))


def test_given_a_batch_of_many_chunks_when_claimed_then_only_its_budget_is_taken_and_the_last_chunk_is_short(
        store):
    batch_id = _batch(store, count=7)
    assert store.progress.claim_chunks(batch_id, budget=2, chunk_size=3) == [(0, 2), (3, 5)]
    assert store.progress.claim_chunks(batch_id, budget=2, chunk_size=3) == []  # full: nothing more
    assert _ledger(store, batch_id) == [0, 3]
    assert store.client.hget(keys.batch(batch_id), "fanout_next") == "6"
    assert store.progress.claim_chunks(batch_id, budget=2, chunk_size=3, finished_start=0) == [(6, 6)]
    assert store.progress.claim_chunks(batch_id, budget=2, chunk_size=3, finished_start=3) == []  # all taken
    assert _ledger(store, batch_id) == [6]


def test_given_a_chunk_finished_twice_when_each_finish_claims_then_the_budget_is_never_exceeded(store):
    batch_id = _batch(store, count=100)
    store.progress.claim_chunks(batch_id, budget=3, chunk_size=10)
    assert store.progress.claim_chunks(batch_id, budget=3, chunk_size=10, finished_start=0) == [(30, 39)]
    assert store.progress.claim_chunks(batch_id, budget=3, chunk_size=10, finished_start=0) == []  # a redelivery
    assert _ledger(store, batch_id) == [10, 20, 30]


def test_given_many_finishes_racing_when_they_claim_at_once_then_in_flight_stays_at_the_budget(store, redis_url):
    batch_id = _batch(store, count=1000)
    store.progress.claim_chunks(batch_id, budget=4, chunk_size=10)

    def finish(start: int) -> list[tuple[int, int]]:
        own = Store(client=connect(redis_url))
        return own.progress.claim_chunks(batch_id, budget=4, chunk_size=10, finished_start=start)

    with ThreadPoolExecutor(8) as pool:  # each first chunk finished twice, concurrently
        taken = [chunk for chunks in pool.map(finish, [0, 10, 20, 30] * 2) for chunk in chunks]
    assert sorted(taken) == [(40, 49), (50, 59), (60, 69), (70, 79)]
    assert _ledger(store, batch_id) == [40, 50, 60, 70]


def test_given_a_cancelled_batch_when_a_chunk_finishes_then_its_next_is_still_taken_within_the_budget(store):
    batch_id = _batch(store, count=50)
    store.progress.claim_chunks(batch_id, budget=2, chunk_size=10)
    store.batches.stop(batch_id, status="cancelled")
    # Its chunks run no model call: they only settle their items' records.
    assert store.progress.claim_chunks(batch_id, budget=2, chunk_size=10, finished_start=0) == [(20, 29)]
    assert store.progress.claim_chunks(batch_id, budget=2, chunk_size=10) == []
    assert _ledger(store, batch_id) == [10, 20]


def test_given_a_deleted_batch_when_its_chunk_finishes_then_nothing_is_taken(store):
    batch_id = _batch(store, count=50)
    store.progress.claim_chunks(batch_id, budget=2, chunk_size=10)
    store.client.delete(keys.batch(batch_id))
    assert store.progress.claim_chunks(batch_id, budget=2, chunk_size=10, finished_start=0) == []
    assert _ledger(store, batch_id) == [10]


def test_given_a_corrupt_fan_out_position_when_claimed_then_it_fails_with_nothing_written(store):
    batch_id = _batch(store, count=50)
    store.progress.claim_chunks(batch_id, budget=1, chunk_size=10)
    store.client.hset(keys.batch(batch_id), "fanout_next", "ten")
    with pytest.raises(redis.ResponseError, match="nothing was written"):
        store.progress.claim_chunks(batch_id, budget=2, chunk_size=10, finished_start=0)
    assert _ledger(store, batch_id) == [0]
