"""Metrics recorded by the state changes themselves, on a real Redis: each exactly once."""

from __future__ import annotations

import pytest

from app.engine.messages import new_message
from app.schemas.agents import CreateAgent
from app.schemas.batches import LettaBatchRequest
from app.store.runs import RunRecord


def _record(agent_id: str, item_id: str, *, ttft_ns: int, duration_ns: int) -> RunRecord:
    messages = [new_message("assistant", [{"type": "text", "text": "a"}], agent_id=agent_id, batch_item_id=item_id)]
    return RunRecord(outcome="succeeded", stop_reason="end_turn", messages=messages, ttft_ns=ttft_ns,
                     total_duration_ns=duration_ns)


def test_given_a_batch_whose_items_commit_twice_when_it_finalizes_then_every_metric_counts_each_event_once(store):
    agent = store.agents.create(CreateAgent(model="simulated/echo"))
    requests = [LettaBatchRequest(agent_id=agent["id"], input=f"q{i}") for i in range(2)]
    batch_id, _ = store.batches.create(requests=requests, callback_url=None, metadata=None, completion_window_s=60)
    for item_id, ttft_ns in zip(store.batches.item_ids(batch_id, start=0, stop=-1), (40_000_000, 3_000_000_000),
                                strict=True):
        store.runs.claim(batch_id=batch_id, item_id=item_id, owner="w1", lease_s=30)
        for _ in range(2):  # a redelivered commit is a no-op
            store.runs.commit(agent_id=agent["id"], record=_record(agent["id"], item_id, ttft_ns=ttft_ns,
                                                                   duration_ns=2 * ttft_ns),
                              batch_id=batch_id, item_id=item_id)
    for _ in range(2):
        store.batches.finalize(batch_id)
    store.callbacks.record_attempt(batch_id, sent_us=1, status_code=500, error="HTTP 500", delivered=False)
    store.callbacks.record_attempt(batch_id, sent_us=2, status_code=200, error=None, delivered=True)

    counters = store.monitor.counters()
    assert counters["batches_created_total"] == 1
    assert counters["batches_finished_total|status=completed"] == 1
    assert counters["items_finished_total|stop_reason=end_turn"] == 2
    assert counters["callback_attempts_total|outcome=failed"] == 1
    assert counters["callback_attempts_total|outcome=delivered"] == 1
    ttft = store.monitor.histograms()["ttft"]
    assert ttft.count == 2 and ttft.sum_s == pytest.approx(3.04)
    assert dict(ttft.buckets)[0.05] == 1 and dict(ttft.buckets)[2.5] == 1 and dict(ttft.buckets)[5.0] == 2
    assert store.monitor.histograms()["duration"].count == 2
    assert sorted(store.monitor.recent_ttft_s()) == [0.04, 3.0]
    _, minutes = store.monitor.minutes(last=2)
    assert sum(finished for _, finished, _ in minutes) == 2


def test_given_a_running_batch_when_cancelled_twice_then_one_cancelled_batch_is_counted(store):
    agent = store.agents.create(CreateAgent(model="simulated/echo"))
    batch_id, _ = store.batches.create(requests=[LettaBatchRequest(agent_id=agent["id"], input="q")],
                                       callback_url=None, metadata=None, completion_window_s=60)
    assert store.batches.stop(batch_id, status="cancelled").result == "stopped"
    assert store.batches.stop(batch_id, status="cancelled").result == "already"
    assert store.batches.finalize(batch_id)[0] in ("terminal", "busy")
    assert store.monitor.counters()["batches_finished_total|status=cancelled"] == 1


def test_given_heartbeats_when_one_worker_stops_beating_then_only_the_live_one_is_listed(store):
    store.monitor.heartbeat("host:1:a", ttl_s=30, host="host", pid=1, threads=8, items_in_flight=2, streams_open=3)
    store.monitor.heartbeat("host:2:b", ttl_s=0.001, host="host", pid=2, threads=8, items_in_flight=0,
                            streams_open=0)
    store.client.delete("bl:worker:host:2:b")  # its heartbeat expired
    workers = store.monitor.workers()
    assert [(w["id"], w["pid"], w["streams_open"]) for w in workers] == [("host:1:a", "1", "3")]
    assert store.client.smembers("bl:workers") == {"host:1:a"}
