"""The reconciler on a real Redis and a real Redis broker (no worker): every way a lost message
could strand a batch is repaired by one sweep, and nothing is done twice."""

from __future__ import annotations

import time
from typing import Any

import pytest

from actors.reconciler import Reconciler
from app.schemas.agents import CreateAgent
from app.schemas.batches import LettaBatchRequest
from app.store import Store, keys
from app.store.progress import Chunk
from app.store.runs import RunRecord
from app.tasks import FINALIZE_BATCH, RUN_CHUNK, SEND_CALLBACK, START_BATCH, TaskQueue
from tests.support.queues import pending_messages


@pytest.fixture
def reconciler(store: Store, tasks: TaskQueue) -> Reconciler:
    return Reconciler(store=store, tasks=tasks, callback_max_attempts=3)


def _batch(store: Store, count: int = 4, **batch: Any) -> str:
    agent = store.agents.create(CreateAgent(model="simulated/echo"))
    requests = [LettaBatchRequest(agent_id=agent["id"], input=f"q{i}") for i in range(count)]
    batch_id, _ = store.batches.create(requests=requests, metadata=None, completion_window_s=3600,
                                       **{"callback_url": None, **batch})
    return batch_id


def _queued(redis_url: str) -> list[str]:
    return sorted(actor.split(":")[-1] for actor in pending_messages(redis_url))


def _end_all(store: Store, batch_id: str) -> None:
    agent_id = store.client.hget(keys.batch(batch_id), "agent_id")
    for item_id in store.batches.item_ids(batch_id, start=0, stop=-1):
        store.runs.claim(batch_id=batch_id, item_id=item_id, owner="w", lease_s=30)
        store.runs.commit(agent_id=agent_id, record=RunRecord(outcome="succeeded", stop_reason="end_turn"),
                          batch_id=batch_id, item_id=item_id)


def test_given_a_batch_whose_start_message_was_lost_when_swept_then_its_fan_out_is_started_once(
        store, reconciler, redis_url):
    batch_id = _batch(store)  # stored, but the web process died before it sent the start
    assert reconciler.sweep().fanouts_resumed == 1
    assert _queued(redis_url) == [START_BATCH]
    assert reconciler.sweep().fanouts_resumed == 0  # its message is alive now: nothing more
    assert store.client.hget(keys.batch(batch_id), "start_message_id")


def test_given_chunks_whose_messages_were_lost_when_swept_then_only_those_are_enqueued_again(
        store, tasks, reconciler, redis_url):
    batch_id = _batch(store, count=4)
    assert store.progress.claim_chunks(batch_id, budget=2, chunk_size=2) == [(0, 1), (2, 3)]
    tasks.send(RUN_CHUNK, batch_id, 0, 1)
    store.progress.record_chunk(Chunk(2, 3, "a-message-that-was-purged"), batch_id=batch_id)
    repairs = reconciler.sweep()
    assert (repairs.chunks_requeued, repairs.fanouts_resumed) == (1, 0)
    assert _queued(redis_url) == [RUN_CHUNK, RUN_CHUNK]
    assert reconciler.sweep().chunks_requeued == 0


def test_given_every_item_ended_but_no_finalize_ran_when_swept_then_finalize_is_asked_for(
        store, reconciler, redis_url):
    batch_id = _batch(store, count=2)
    store.progress.record_start(batch_id, message_id="gone")
    store.client.hset(keys.batch(batch_id), "fanout_next", 2)
    _end_all(store, batch_id)
    assert reconciler.sweep().finalizes_requested == 1
    assert _queued(redis_url) == [FINALIZE_BATCH]


def test_given_a_callback_claimed_but_never_sent_when_swept_then_it_is_queued_again(store, reconciler, redis_url):
    batch_id = _batch(store, count=1, callback_url="http://example.com/hook")
    store.client.hset(keys.batch(batch_id), "fanout_next", 1)
    _end_all(store, batch_id)
    assert store.batches.finalize(batch_id)[0] == "finalized"
    assert store.callbacks.claim_queueing(batch_id)  # ...and then the finalizer died before sending
    assert reconciler.sweep().callbacks_requeued == 1
    assert _queued(redis_url) == [SEND_CALLBACK]
    assert reconciler.sweep().callbacks_requeued == 0  # in flight now


def test_given_a_callback_out_of_attempts_or_delivered_when_swept_then_the_batch_is_retired(store, reconciler):
    given_up = _batch(store, count=1, callback_url="http://example.com/hook")
    delivered = _batch(store, count=1, callback_url="http://example.com/hook")
    for batch_id, outcomes in ((given_up, [False] * 3), (delivered, [True])):
        store.client.hset(keys.batch(batch_id), "fanout_next", 1)
        _end_all(store, batch_id)
        store.batches.finalize(batch_id)
        store.callbacks.claim_queueing(batch_id)
        for ok in outcomes:
            store.callbacks.record_attempt(batch_id, sent_us=1, status_code=200 if ok else 500, error=None,
                                           delivered=ok)
    repairs = reconciler.sweep()
    assert (repairs.callbacks_requeued, repairs.batches_retired) == (0, 2)
    assert store.progress.active_ids() == []


def test_given_a_window_passed_on_the_redis_clock_when_swept_then_the_batch_expires_and_finalize_follows(
        store, reconciler, redis_url):
    batch_id = _batch(store, count=2)
    seconds, micros = store.client.time()
    store.client.zadd(keys.DEADLINES, {batch_id: seconds * 1_000_000 + micros - 1})
    late = _batch(store, count=1)
    repairs = reconciler.sweep()
    assert repairs.batches_expired == 1
    assert store.batches.status(batch_id) == "expired" and store.batches.status(late) == "running"
    assert FINALIZE_BATCH in _queued(redis_url)
    assert batch_id not in store.client.zrange(keys.DEADLINES, 0, -1)


def test_given_two_processes_when_both_try_to_sweep_then_one_gets_the_lease_until_it_lapses(store):
    assert store.sweeps.try_lease(owner="a", ttl_s=0.3)
    assert not store.sweeps.try_lease(owner="b", ttl_s=0.3)
    time.sleep(0.4)
    assert store.sweeps.try_lease(owner="b", ttl_s=0.3)


def test_given_a_finished_sweep_when_recorded_then_its_time_and_repairs_are_readable(store, reconciler):
    _batch(store)
    repairs = reconciler.sweep()
    store.sweeps.record(owner="w", finished_us=123, duration_ms=4.5, repairs=repairs.counts())
    reconciler.sweep()
    assert store.sweeps.last()["fanouts_resumed"] == "1" and store.sweeps.last()["finished_us"] == "123"
    assert store.sweeps.totals()["fanouts_resumed"] == 1


def test_given_a_callback_lock_that_lapsed_when_its_first_holder_unlocks_then_the_new_holder_keeps_it(store):
    batch_id = _batch(store, count=1, callback_url="http://example.com/hook")
    first = store.callbacks.lock(batch_id, ttl_s=1)
    store.client.delete(keys.callback_lock(batch_id))  # as if its time ran out
    second = store.callbacks.lock(batch_id, ttl_s=30)
    assert first and second and first != second
    assert not store.callbacks.unlock(batch_id, token=first)
    assert store.callbacks.lock(batch_id, ttl_s=30) is None  # still held by the second
    assert store.callbacks.unlock(batch_id, token=second)


def test_given_a_chunk_retried_later_under_a_new_broker_id_when_swept_then_it_counts_as_alive(
        store, tasks, reconciler):
    batch_id = _batch(store)
    assert store.progress.claim_chunks(batch_id, budget=1, chunk_size=4) == [(0, 3)]
    first = tasks.send(RUN_CHUNK, batch_id, 0, 3)
    retry = tasks.send(RUN_CHUNK, batch_id, 0, 3, delay_ms=60_000)  # as Dramatiq's Retries re-enqueues
    store.client.hdel("dramatiq:items.msgs", first)  # the first attempt is acked
    assert first != retry
    assert reconciler.sweep().chunks_requeued == 0
