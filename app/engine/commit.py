"""Committing a run when other runs of the same agent may have committed since it started: the
run's memory edits are replayed on the blocks' new values (the commit compares versions), so
concurrent requests to one agent never lose each other's edits."""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

from app.engine.tools import BUILTIN_TOOLS, ToolContext, ToolError
from app.store import Store
from app.store.runs import Commit, RunRecord

logger = logging.getLogger(__name__)

#: Replays before giving up; each one needs another run to commit the same block in between.
MAX_REPLAYS = 20


class BlockContention(RuntimeError):
    """A block kept changing under every replay."""


def commit_run(store: Store, *, agent_id: str, record: RunRecord, batch_id: str | None = None,
               item_id: str | None = None) -> Commit:
    for _ in range(MAX_REPLAYS):
        commit = store.runs.commit(agent_id=agent_id, record=record, batch_id=batch_id, item_id=item_id)
        if commit.stale_block is None:
            return commit
        record = replay_block_edits(record, store.agents.blocks(agent_id))
    raise BlockContention(f"memory blocks of agent {agent_id} kept changing under this run's commit")


def replay_block_edits(record: RunRecord, current: dict[str, dict[str, Any]]) -> RunRecord:
    """The record with its memory edits applied again, in order, to the blocks' current values."""
    tools = ToolContext(blocks=dict(current), messages=[], changed_blocks=set())
    for name, arguments in record.block_edits:
        try:
            BUILTIN_TOOLS[name].run(tools, arguments)
        except ToolError as exc:
            logger.info("A memory edit (%s) no longer applies after a concurrent change: %s", name, exc)
    blocks = [tools.blocks[label] | {"base_version": current[label].get("version", 0)}
              for label in sorted(tools.changed_blocks)]
    return dataclasses.replace(record, blocks=blocks)
