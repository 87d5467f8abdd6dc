"""Runs of one agent committing concurrently keep each other's memory edits (real Redis)."""

from __future__ import annotations

import pytest

from app.engine.commit import commit_run
from app.schemas.agents import CreateAgent
from app.store import Store, connect
from app.store.runs import RunRecord


@pytest.fixture
def store(redis_url: str) -> Store:
    return Store(client=connect(redis_url))


def _appending(agent: dict, text: str) -> RunRecord:
    """A run that read the block at the agent's creation and appended `text` to it."""
    block = agent["blocks"][0]
    edited = block | {"value": f"{block['value']}\n{text}", "base_version": block.get("version", 0)}
    return RunRecord(outcome="succeeded", stop_reason="end_turn", blocks=[edited],
                     block_edits=[("core_memory_append", {"label": "human", "content": text})])


def test_given_two_runs_that_read_the_same_block_when_both_commit_then_both_edits_are_kept(store):
    agent = store.agents.create(CreateAgent(model="simulated/echo", memory_blocks=[{"label": "human",
                                                                                    "value": "Name: Sam"}]))
    first = commit_run(store, agent_id=agent["id"], record=_appending(agent, "likes tea"))
    second = commit_run(store, agent_id=agent["id"], record=_appending(agent, "lives in Oslo"))
    assert first.committed and second.committed
    block = store.agents.blocks(agent["id"])["human"]
    assert block["value"] == "Name: Sam\nlikes tea\nlives in Oslo"
    assert block["version"] == 2


def test_given_a_stale_block_when_committed_directly_then_nothing_is_written(store):
    agent = store.agents.create(CreateAgent(model="simulated/echo", memory_blocks=[{"label": "human", "value": "x"}]))
    commit_run(store, agent_id=agent["id"], record=_appending(agent, "one"))
    stale = store.runs.commit(agent_id=agent["id"], record=_appending(agent, "two"))
    assert not stale.committed and stale.stale_block == "human"
    assert store.agents.blocks(agent["id"])["human"]["value"] == "x\none"


def test_given_an_edit_that_no_longer_applies_when_replayed_then_the_block_keeps_the_other_runs_value(store):
    agent = store.agents.create(CreateAgent(model="simulated/echo", memory_blocks=[{"label": "human",
                                                                                    "value": "Name: Sam"}]))
    block = agent["blocks"][0]
    renamed = RunRecord(outcome="succeeded", stop_reason="end_turn",
                        blocks=[block | {"value": "Name: Samantha", "base_version": 0}],
                        block_edits=[("core_memory_replace", {"label": "human", "old_content": "Sam",
                                                              "new_content": "Samantha"})])
    rewritten = RunRecord(outcome="succeeded", stop_reason="end_turn",
                          blocks=[block | {"value": "Name: Bob", "base_version": 0}],
                          block_edits=[("memory_replace", {"label": "human", "old_str": "Sam", "new_str": "Bob"})])
    commit_run(store, agent_id=agent["id"], record=rewritten)
    assert commit_run(store, agent_id=agent["id"], record=renamed).committed
    assert store.agents.blocks(agent["id"])["human"]["value"] == "Name: Bob"
