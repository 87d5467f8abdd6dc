"""Claim and commit of batch items on a real Redis: at-least-once delivery never double counts."""

from __future__ import annotations

import time

import pytest

from app.engine.messages import new_message
from app.schemas.agents import CreateAgent
from app.schemas.batches import LettaBatchRequest
from app.store import Store, keys
from app.store.runs import RunRecord


@pytest.fixture
def batch(store: Store) -> tuple[str, str, list[str]]:
    agent = store.agents.create(CreateAgent(model="simulated/echo"))
    requests = [LettaBatchRequest(agent_id=agent["id"], input=f"q{i}") for i in range(3)]
    batch_id, _ = store.batches.create(requests=requests, callback_url=None, metadata=None, completion_window_s=60)
    return agent["id"], batch_id, store.batches.item_ids(batch_id, start=0, stop=-1)


def _record(agent_id: str, item_id: str, outcome: str = "succeeded") -> RunRecord:
    messages = [new_message("user", [{"type": "text", "text": "q"}], agent_id=agent_id, batch_item_id=item_id),
                new_message("assistant", [{"type": "text", "text": "a"}], agent_id=agent_id, batch_item_id=item_id)]
    return RunRecord(outcome=outcome, stop_reason="end_turn" if outcome == "succeeded" else "llm_api_error",
                     messages=messages, ttft_ns=5, total_duration_ns=9)


def test_given_a_claimed_item_when_committed_twice_then_messages_and_counts_are_recorded_once(store, batch):
    agent_id, batch_id, item_ids = batch
    assert store.runs.claim(batch_id=batch_id, item_id=item_ids[0], owner="w1", lease_s=30).action == "run"
    first = store.runs.commit(agent_id=agent_id, record=_record(agent_id, item_ids[0]), batch_id=batch_id,
                              item_id=item_ids[0])
    second = store.runs.commit(agent_id=agent_id, record=_record(agent_id, item_ids[0]), batch_id=batch_id,
                               item_id=item_ids[0])
    assert first.committed and first.remaining == 2
    assert not second.committed
    counts = store.batches.get(batch_id)["request_counts"]
    assert counts["succeeded"] == 1 and counts["running"] == 0 and counts["pending"] == 2
    assert store.client.zcard(keys.batch_messages(batch_id)) == 2
    assert store.client.zcard(keys.agent_messages(agent_id)) == 2


def test_given_a_live_lease_when_a_duplicate_delivery_claims_then_it_is_told_busy(store, batch):
    _, batch_id, item_ids = batch
    assert store.runs.claim(batch_id=batch_id, item_id=item_ids[0], owner="w1", lease_s=30).action == "run"
    assert store.runs.claim(batch_id=batch_id, item_id=item_ids[0], owner="w2", lease_s=30).action == "busy"
    assert store.batches.get(batch_id)["request_counts"]["running"] == 1


def test_given_an_expired_lease_when_another_worker_claims_then_it_takes_over_without_recounting(store, batch):
    _, batch_id, item_ids = batch
    store.runs.claim(batch_id=batch_id, item_id=item_ids[0], owner="dead", lease_s=0.05)
    time.sleep(0.1)
    assert store.runs.claim(batch_id=batch_id, item_id=item_ids[0], owner="w2", lease_s=30).action == "run"
    counts = store.batches.get(batch_id)["request_counts"]
    assert counts["running"] == 1 and counts["pending"] == 2
    assert store.batches.items_page(batch_id, after=None, before=None, limit=10, order="asc")[0]["attempts"] == 2


def test_given_a_released_item_when_claimed_again_then_it_runs_at_once(store, batch):
    _, batch_id, item_ids = batch
    store.runs.claim(batch_id=batch_id, item_id=item_ids[0], owner="w1", lease_s=30)
    assert store.runs.release(item_id=item_ids[0], owner="w1")
    assert store.runs.claim(batch_id=batch_id, item_id=item_ids[0], owner="w2", lease_s=30).action == "run"


def test_given_leases_when_renewed_by_their_owner_then_only_the_owners_leases_extend(store, batch):
    _, batch_id, item_ids = batch
    store.runs.claim(batch_id=batch_id, item_id=item_ids[0], owner="w1", lease_s=0.2)
    store.runs.claim(batch_id=batch_id, item_id=item_ids[1], owner="w2", lease_s=0.2)
    assert store.runs.renew(item_ids=item_ids[:2], owner="w1", lease_s=30) == 1
    time.sleep(0.3)
    assert store.runs.claim(batch_id=batch_id, item_id=item_ids[0], owner="w3", lease_s=30).action == "busy"
    assert store.runs.claim(batch_id=batch_id, item_id=item_ids[1], owner="w3", lease_s=30).action == "run"


def test_given_the_last_item_when_committed_then_remaining_is_zero_and_finalize_completes_the_batch(store, batch):
    agent_id, batch_id, item_ids = batch
    remaining = []
    for index, item_id in enumerate(item_ids):
        store.runs.claim(batch_id=batch_id, item_id=item_id, owner="w", lease_s=30)
        outcome = "errored" if index == 0 else "succeeded"
        remaining.append(store.runs.commit(agent_id=agent_id, record=_record(agent_id, item_id, outcome),
                                           batch_id=batch_id, item_id=item_id).remaining)
    assert remaining == [2, 1, 0]
    assert store.batches.finalize(batch_id) == ("finalized", "completed")
    assert store.batches.finalize(batch_id) == ("terminal", "completed")
    job = store.batches.get(batch_id)
    assert job["stop_reason"] == "end_turn" and job["completed_at"] and job["total_duration_ns"] > 0


def test_given_every_item_failed_the_same_way_when_finalized_then_the_batch_fails_with_that_reason(store, batch):
    agent_id, batch_id, item_ids = batch
    for item_id in item_ids:
        store.runs.claim(batch_id=batch_id, item_id=item_id, owner="w", lease_s=30)
        store.runs.commit(agent_id=agent_id, record=_record(agent_id, item_id, "errored"), batch_id=batch_id,
                          item_id=item_id)
    assert store.batches.finalize(batch_id) == ("finalized", "failed")
    assert store.batches.get(batch_id)["stop_reason"] == "llm_api_error"


def test_given_a_batch_with_running_items_when_finalized_then_it_waits(store, batch):
    _, batch_id, item_ids = batch
    store.runs.claim(batch_id=batch_id, item_id=item_ids[0], owner="w", lease_s=30)
    assert store.batches.finalize(batch_id)[0] == "busy"
    assert store.batches.get(batch_id)["status"] == "running"


def test_given_a_cancelled_batch_when_a_pending_item_is_claimed_then_it_is_stopped_without_recounting(store, batch):
    _, batch_id, item_ids = batch
    store.runs.claim(batch_id=batch_id, item_id=item_ids[0], owner="w", lease_s=30)
    stopped = store.batches.stop(batch_id, status="cancelled")
    assert stopped.result == "stopped" and stopped.running == 1
    assert store.runs.claim(batch_id=batch_id, item_id=item_ids[1], owner="w", lease_s=30).action == "stopped"
    counts = store.batches.get(batch_id)["request_counts"]
    assert counts == {"total": 3, "pending": 0, "running": 1, "succeeded": 0, "errored": 0, "cancelled": 2,
                      "expired": 0}


def test_given_a_dead_workers_item_in_a_cancelled_batch_when_claimed_then_the_claimer_must_settle_it(store, batch):
    agent_id, batch_id, item_ids = batch
    store.runs.claim(batch_id=batch_id, item_id=item_ids[0], owner="dead", lease_s=0.05)
    store.batches.stop(batch_id, status="cancelled")
    time.sleep(0.1)
    assert store.runs.claim(batch_id=batch_id, item_id=item_ids[0], owner="w", lease_s=30).action == "stop_running"
    commit = store.runs.commit(agent_id=agent_id, record=RunRecord(outcome="cancelled", stop_reason="cancelled"),
                               batch_id=batch_id, item_id=item_ids[0])
    assert commit.committed and commit.remaining == 0
    assert store.batches.get(batch_id)["request_counts"]["cancelled"] == 3


def test_given_a_terminal_batch_when_stopped_then_conflict_and_a_missing_one_is_missing(store, batch):
    _, batch_id, _ = batch
    store.client.hset(keys.batch(batch_id), "status", "failed")
    assert store.batches.stop(batch_id, status="cancelled").result == "conflict"
    assert store.batches.stop("job-nope", status="cancelled").result == "missing"


def test_given_a_run_outside_a_batch_when_committed_then_messages_join_the_agent_history_only(store, batch):
    agent_id, batch_id, _ = batch
    commit = store.runs.commit(agent_id=agent_id, record=_record(agent_id, None))
    assert commit.committed
    assert store.client.zcard(keys.agent_messages(agent_id)) == 2
    assert store.client.zcard(keys.batch_messages(batch_id)) == 0


def test_given_every_item_ended_but_not_finalized_when_cancelled_then_the_outcome_is_kept(store, batch):
    agent_id, batch_id, item_ids = batch
    for item_id in item_ids:
        store.runs.claim(batch_id=batch_id, item_id=item_id, owner="w", lease_s=30)
        store.runs.commit(agent_id=agent_id, record=_record(agent_id, item_id), batch_id=batch_id, item_id=item_id)
    stopped = store.batches.stop(batch_id, status="cancelled")
    assert stopped.result == "settled" and stopped.needs_finalize
    assert store.batches.finalize(batch_id) == ("finalized", "completed")
    assert store.batches.get(batch_id)["request_counts"]["cancelled"] == 0


def test_given_a_stop_that_already_happened_when_repeated_then_finalize_is_asked_for_again(store, batch):
    _, batch_id, _ = batch
    assert store.batches.stop(batch_id, status="expired").needs_finalize
    again = store.batches.stop(batch_id, status="expired")
    assert again.result == "already" and again.needs_finalize


def test_given_two_finalizers_when_both_claim_the_callback_then_only_one_gets_it(store, batch):
    _, batch_id, _ = batch
    assert [store.callbacks.claim_queueing(batch_id), store.callbacks.claim_queueing(batch_id)] == [True, False]


def test_given_an_idempotency_key_when_storing_fails_then_the_key_is_freed_for_the_retry(store, batch, monkeypatch):
    agent_id, _, _ = batch
    requests = [LettaBatchRequest(agent_id=agent_id, input="x")]

    def fail(*args, **kwargs):
        raise RuntimeError("storage failed")

    monkeypatch.setattr(store.batches, "_store", fail)
    with pytest.raises(RuntimeError):
        store.batches.create(requests=requests, callback_url=None, metadata=None, completion_window_s=60,
                             idempotency_key="k")
    monkeypatch.undo()
    assert store.batches.create(requests=requests, callback_url=None, metadata=None, completion_window_s=60,
                                idempotency_key="k")[1] is True


def test_given_a_run_with_thousands_of_messages_when_committed_then_all_are_stored_in_order(store, batch):
    agent_id, batch_id, item_ids = batch
    store.runs.claim(batch_id=batch_id, item_id=item_ids[0], owner="w", lease_s=30)
    messages = [new_message("user", [{"type": "text", "text": f"m{i}"}], agent_id=agent_id, batch_item_id=item_ids[0])
                for i in range(4500)]  # more arguments than one Lua unpack takes
    commit = store.runs.commit(agent_id=agent_id, batch_id=batch_id, item_id=item_ids[0],
                               record=RunRecord(outcome="succeeded", stop_reason="end_turn", messages=messages))
    assert commit.committed
    ids = store.client.zrange(keys.agent_messages(agent_id), 0, -1)
    assert ids == [message["id"] for message in messages]
    assert store.client.zrange(keys.batch_messages(batch_id), 0, -1) == ids
    first, last = store.client.hget(keys.item(item_ids[0]), "msg_seq").split(":")
    assert int(last) - int(first) == 4499
