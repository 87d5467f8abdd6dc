"""Runs of one agent committing concurrently keep each other's memory edits (real Redis)."""

from __future__ import annotations

from app.engine.commit import commit_run
from app.engine.tools import BUILTIN_TOOLS, ToolContext
from app.schemas.agents import CreateAgent
from app.store import Store
from app.store.runs import RunRecord


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


def _edited(agent: dict, *edits: tuple[str, dict]) -> RunRecord:
    """A run that read the agent's blocks as created and made `edits` with the real tools, as a run does."""
    tools = ToolContext(blocks={block["label"]: block for block in agent["blocks"]}, messages=[], changed_blocks=set())
    for name, arguments in edits:
        BUILTIN_TOOLS[name].run(tools, arguments)
    blocks = [tools.blocks[label] | {"base_version": 0} for label in sorted(tools.changed_blocks)]
    return RunRecord(outcome="succeeded", stop_reason="end_turn", blocks=blocks, block_edits=list(edits))


def _agent(store: Store, value: str) -> dict:
    return store.agents.create(CreateAgent(model="simulated/echo", memory_blocks=[{"label": "human", "value": value}]))


def _commit_all(store: Store, agent: dict, records: list[RunRecord]) -> str:
    for record in records:
        assert commit_run(store, agent_id=agent["id"], record=record).committed
    return store.agents.blocks(agent["id"])["human"]["value"]


def _replace(old: str, new: str, tool: str = "core_memory_replace") -> tuple[str, dict]:
    if tool == "memory_replace":
        return tool, {"label": "human", "old_str": old, "new_str": new}
    return tool, {"label": "human", "old_content": old, "new_content": new}


def test_given_three_runs_that_each_rename_sam_to_samantha_when_all_commit_then_one_samantha_is_kept(store):
    agent = _agent(store, "Name: Sam")
    runs = [_edited(agent, _replace("Sam", "Samantha")) for _ in range(3)]
    assert _commit_all(store, agent, runs) == "Name: Samantha"


def test_given_two_runs_that_each_extend_a_line_with_its_own_text_when_both_commit_then_the_extension_is_made_once(
        store):
    agent = _agent(store, "Name: Sam\nlikes tea")
    runs = [_edited(agent, _replace("likes tea", "likes tea and coffee", tool)) for tool in ("core_memory_replace",
                                                                                          "memory_replace")]
    assert _commit_all(store, agent, runs) == "Name: Sam\nlikes tea and coffee"


def test_given_two_runs_with_different_edits_of_one_block_when_both_commit_then_both_edits_are_kept(store):
    agent = _agent(store, "Name: Sam\nlikes tea")
    runs = [_edited(agent, _replace("Sam", "Samantha")), _edited(agent, _replace("tea", "coffee", "memory_replace")),
            _edited(agent, ("core_memory_append", {"label": "human", "content": "lives in Oslo"}))]
    assert _commit_all(store, agent, runs) == "Name: Samantha\nlikes coffee\nlives in Oslo"


def test_given_a_rename_and_an_append_of_text_holding_the_old_name_when_both_commit_then_the_rename_applies_to_it(
        store):
    agent = _agent(store, "Name: Sam")
    appended = _edited(agent, ("core_memory_append", {"label": "human", "content": "Sam likes tea"}))
    renamed = _edited(agent, _replace("Sam", "Samantha"))
    assert _commit_all(store, agent, [appended, renamed]) == "Name: Samantha\nSamantha likes tea"


def test_given_an_edit_whose_text_vanished_when_replayed_then_it_is_skipped_with_one_log_line(store, caplog):
    agent = _agent(store, "Name: Sam")
    caplog.set_level("INFO", logger="app.engine.commit")
    runs = [_edited(agent, _replace("Sam", "Bob", "memory_replace")), _edited(agent, _replace("Sam", "Samantha"))]
    assert _commit_all(store, agent, runs) == "Name: Bob"
    [line] = [r.getMessage() for r in caplog.records if r.name == "app.engine.commit"]
    assert "skipped" in line and "no longer in block 'human'" in line


def test_given_two_runs_that_append_the_same_text_when_both_commit_then_it_is_appended_twice_as_letta_would(store):
    agent = _agent(store, "Name: Sam")
    runs = [_edited(agent, ("core_memory_append", {"label": "human", "content": "likes tea"})) for _ in range(2)]
    assert _commit_all(store, agent, runs) == "Name: Sam\nlikes tea\nlikes tea"
