"""Many batch items committed in one call (commit_items.lua) on a real Redis: each item is still
checked and written on its own, and what they share is written once."""

from __future__ import annotations

import time

import pytest
import redis

from app.engine.messages import new_message
from app.schemas.agents import CreateAgent
from app.schemas.batches import LettaBatchRequest
from app.store import Store, keys
from app.store.commits import ItemCommit
from app.store.runs import RunRecord


def _batch(store: Store, n: int) -> tuple[str, str, list[str]]:
    agent_id = store.agents.create(CreateAgent(model="simulated/echo", memory_blocks=[
        {"label": "human", "value": "Name: Sam"}]))["id"]
    requests = [LettaBatchRequest(agent_id=agent_id, input=f"q{i}") for i in range(n)]
    batch_id, _ = store.batches.create(requests=requests, callback_url=None, metadata=None, completion_window_s=60)
    return agent_id, batch_id, store.batches.item_ids(batch_id, start=0, stop=-1)


def _entry(batch_id: str, agent_id: str, item_id: str, outcome: str = "succeeded") -> ItemCommit:
    messages = [new_message("user", [{"type": "text", "text": f"q {item_id}"}], agent_id=agent_id,
                            batch_item_id=item_id),
                new_message("assistant", [{"type": "text", "text": "a"}], agent_id=agent_id, batch_item_id=item_id)]
    record = RunRecord(outcome=outcome, stop_reason="end_turn" if outcome == "succeeded" else "llm_api_error",
                       messages=messages, ttft_ns=5_000_000, total_duration_ns=9_000_000, error=None)
    return ItemCommit(batch_id=batch_id, item_id=item_id, agent_id=agent_id, record=record)


def _claim(store: Store, batch_id: str, item_id: str, owner: str, lease_s: float = 30) -> None:
    assert store.runs.claim(batch_id=batch_id, item_id=item_id, owner=owner, lease_s=lease_s).action == "run"


def test_given_three_items_when_committed_in_one_call_then_each_is_recorded_in_order_and_counters_move_once_each(
        store):
    agent_id, batch_id, item_ids = _batch(store, 3)
    for item_id in item_ids:
        _claim(store, batch_id, item_id, "w1")
    entries = [_entry(batch_id, agent_id, item_id, "errored" if n == 1 else "succeeded")
               for n, item_id in enumerate(item_ids)]
    commits = store.commits.commit_many(entries, owner="w1")
    assert [c.committed for c in commits] == [True, True, True]
    assert [c.remaining for c in commits] == [2, 1, 0]
    counts = store.batches.get(batch_id)["request_counts"]
    assert counts["succeeded"] == 2 and counts["errored"] == 1 and counts["running"] == 0
    # The agent's history holds the items' messages in commit order, each item's consecutive.
    ids = store.client.zrange(keys.agent_messages(agent_id), 0, -1)
    assert ids == [message["id"] for entry in entries for message in entry.record.messages]
    seqs = [store.client.hget(keys.item(item_id), "msg_seq") for item_id in item_ids]
    firsts = [int(seq.split(":")[0]) for seq in seqs]
    assert firsts == sorted(firsts) and all(int(s.split(":")[1]) - int(s.split(":")[0]) == 1 for s in seqs)
    # Metrics add up per item, though written once per call.
    finished = {k: v for k, v in store.client.hgetall(keys.METRIC_COUNTERS).items() if k.startswith("items_")}
    assert finished == {"items_finished_total|stop_reason=end_turn": "2",
                        "items_finished_total|stop_reason=llm_api_error": "1"}
    assert store.client.llen(keys.METRIC_TTFT_RECENT) == 3
    ttft = store.client.hgetall(keys.METRIC_TTFT)
    assert sum(int(v) for k, v in ttft.items() if k != "sum") == 3 and abs(float(ttft["sum"]) - 0.015) < 1e-9


def test_given_the_same_item_twice_in_one_call_then_the_second_commits_nothing(store):
    agent_id, batch_id, item_ids = _batch(store, 2)
    _claim(store, batch_id, item_ids[0], "w1")
    first, duplicate = _entry(batch_id, agent_id, item_ids[0]), _entry(batch_id, agent_id, item_ids[0])
    commits = store.commits.commit_many([first, duplicate], owner="w1")
    assert [c.committed for c in commits] == [True, False]
    assert commits[1].remaining == -1
    counts = store.batches.get(batch_id)["request_counts"]
    assert counts["succeeded"] == 1 and counts["running"] == 0 and counts["pending"] == 1
    assert store.client.zcard(keys.batch_messages(batch_id)) == 2
    assert store.client.hget(keys.METRIC_COUNTERS, "items_finished_total|stop_reason=end_turn") == "1"
    assert store.client.exists(*(keys.message(m["id"]) for m in duplicate.record.messages)) == 0


def test_given_one_item_whose_lease_another_owner_took_when_committed_with_its_siblings_then_only_it_is_left_alone(
        store):
    agent_id, batch_id, item_ids = _batch(store, 3)
    _claim(store, batch_id, item_ids[0], "w1", lease_s=0.05)
    time.sleep(0.1)
    _claim(store, batch_id, item_ids[0], "w2")  # w1's lease lapsed: w2 took the item over
    for item_id in item_ids[1:]:
        _claim(store, batch_id, item_id, "w1")
    entries = [_entry(batch_id, agent_id, item_id) for item_id in item_ids]
    commits = store.commits.commit_many(entries, owner="w1")
    assert [c.committed for c in commits] == [False, True, True]
    assert store.client.hget(keys.item(item_ids[0]), "status") == "running"
    assert store.client.hget(keys.item(item_ids[0]), "lease_owner") == "w2"
    counts = store.batches.get(batch_id)["request_counts"]
    assert counts["succeeded"] == 2 and counts["running"] == 1
    assert store.client.zcard(keys.batch_messages(batch_id)) == 4
    # The owner that holds it commits it.
    assert store.commits.commit_many([entries[0]], owner="w2")[0].remaining == 0


def test_given_two_runs_of_one_agent_editing_one_block_in_one_call_then_the_second_is_told_stale_and_the_first_stands(
        store):
    agent_id, batch_id, item_ids = _batch(store, 2)
    for item_id in item_ids:
        _claim(store, batch_id, item_id, "w1")
    block = store.agents.blocks(agent_id)["human"]
    entries = []
    for item_id, text in zip(item_ids, ["Likes tea.", "Likes jazz."], strict=True):
        entry = _entry(batch_id, agent_id, item_id)
        entry.record.blocks = [block | {"value": f"{block['value']}\n{text}", "base_version": block.get("version", 0)}]
        entries.append(entry)
    first, second = store.commits.commit_many(entries, owner="w1")
    assert first.committed and first.stale_block is None
    assert not second.committed and second.stale_block == "human" and second.remaining == -1
    assert store.agents.blocks(agent_id)["human"]["value"] == "Name: Sam\nLikes tea."
    assert store.client.zcard(keys.agent_messages(agent_id)) == 2
    assert store.client.hget(keys.item(item_ids[1]), "status") == "running"


def test_given_an_unreadable_block_for_the_last_item_of_a_call_then_nothing_of_any_item_is_written(store):
    agent_id, batch_id, item_ids = _batch(store, 2)
    for item_id in item_ids:
        _claim(store, batch_id, item_id, "w1")
    block = store.agents.blocks(agent_id)["human"]
    store.client.hset(keys.agent_blocks(agent_id), "human", "{not json")
    entries = [_entry(batch_id, agent_id, item_id) for item_id in item_ids]
    entries[1].record.blocks = [block | {"value": "changed", "base_version": 0}]
    with pytest.raises(redis.ResponseError, match="nothing was written"):
        store.commits.commit_many(entries, owner="w1")
    assert [store.client.hget(keys.item(item_id), "status") for item_id in item_ids] == ["running", "running"]
    assert store.client.zcard(keys.batch_messages(batch_id)) == 0
    assert store.batches.get(batch_id)["request_counts"]["running"] == 2


def test_given_runs_larger_than_a_slice_when_committed_in_one_call_then_they_go_in_slices_in_order(
        store, monkeypatch):
    from app.store import commits as commits_module

    agent_id, batch_id, item_ids = _batch(store, 4)
    for item_id in item_ids:
        _claim(store, batch_id, item_id, "w1")
    entries = [_entry(batch_id, agent_id, item_id) for item_id in item_ids]
    entries[1].record.messages[0]["content"][0]["text"] = "x" * 3000
    monkeypatch.setattr(commits_module, "COMMIT_SLICE_BYTES", 4000)
    store.client.config_resetstat()
    commits = store.commits.commit_many(entries, owner="w1")
    assert [c.committed for c in commits] == [True] * 4 and commits[-1].remaining == 0
    # [item 0, item 1 (large)] would pass the slice: item 1 starts a slice of its own, which
    # item 2 would pass too; items 2 and 3 go together.
    evalsha = store.client.info("commandstats")["cmdstat_evalsha"]
    assert evalsha["calls"] - evalsha.get("failed_calls", 0) == 3, evalsha
    ids = store.client.zrange(keys.agent_messages(agent_id), 0, -1)
    assert ids == [message["id"] for entry in entries for message in entry.record.messages]


def test_given_a_cancelled_batch_when_an_unstarted_item_is_committed_then_its_count_moves_and_the_counts_add_up(
        store):
    """The stop counted the unstarted item as cancelled: an end committed for it (a worker's error
    path, before any claim) moves that count to its outcome instead of adding a second one."""
    agent_id, batch_id, item_ids = _batch(store, 2)
    store.blobs.materialize(batch_id, item_ids, start=0)  # pending hashes, as a batch stored before blobs has
    assert store.batches.stop(batch_id, status="cancelled")
    [commit] = store.commits.commit_many([_entry(batch_id, agent_id, item_ids[0], "errored")], owner="w1")
    assert commit.committed
    counts = store.batches.get(batch_id)["request_counts"]
    assert (counts["cancelled"], counts["errored"], counts["pending"], counts["running"]) == (1, 1, 0, 0)


def test_given_an_error_text_with_a_lone_surrogate_when_committed_then_it_is_recorded_with_u_fffd_in_its_place(store):
    """A provider's error body may decode to a lone UTF-16 surrogate (`"\\ud800"` in its JSON);
    Redis's JSON decoder refuses one, which failed the item's commit and lost its real error."""
    agent_id, batch_id, item_ids = _batch(store, 1)
    _claim(store, batch_id, item_ids[0], "w1")
    entry = _entry(batch_id, agent_id, item_ids[0], "errored")
    entry.record.error = "upstream said \ud800 then stopped"

    [commit] = store.commits.commit_many([entry], owner="w1")

    assert commit.committed
    assert store.client.hget(keys.item(item_ids[0]), "error") == "upstream said \ufffd then stopped"
    assert store.batches.get(batch_id)["request_counts"]["errored"] == 1


def test_given_a_block_holding_a_lone_surrogate_when_runs_edit_it_then_each_commit_stands(store):
    """A model's memory edit may hold a lone surrogate (its tool arguments are JSON, which allows
    one; a client's is refused by validation). The scripts decode the run's block, and later the
    stored one to check its version: the commit failed, and so would every later edit of it."""
    agent_id = store.agents.create(CreateAgent(model="simulated/echo", memory_blocks=[
        {"label": "human", "value": "Name: Sam"}]))["id"]
    requests = [LettaBatchRequest(agent_id=agent_id, input=f"q{i}") for i in range(2)]
    batch_id, _ = store.batches.create(requests=requests, callback_url=None, metadata=None, completion_window_s=60)
    item_ids = store.batches.item_ids(batch_id, start=0, stop=-1)
    for n, item_id in enumerate(item_ids):
        _claim(store, batch_id, item_id, "w1")
        block = store.agents.blocks(agent_id)["human"]
        entry = _entry(batch_id, agent_id, item_id)
        entry.record.blocks = [block | {"value": f"{block['value']}\nedit {n} \ud83d",
                                        "base_version": block.get("version", 0)}]

        [commit] = store.commits.commit_many([entry], owner="w1")

        assert commit.committed and commit.stale_block is None
    assert store.agents.blocks(agent_id)["human"]["value"] == "Name: Sam\nedit 0 \ufffd\nedit 1 \ufffd"
