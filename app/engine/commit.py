"""Committing a run when other runs of the same agent may have committed since it started: the
run's memory edits are replayed on the blocks' new values (the commit compares versions), so
concurrent requests to one agent never lose each other's edits, and never apply one edit twice.

A replayed edit applies only where its effect is not there yet (docs/architecture.md, "Concurrent
requests to one agent"): a replacement leaves alone the occurrences of its old text that already
sit inside its new text (another run made the same replacement: `Sam` -> `Samantha` twice gives one
`Samantha`), and is skipped when its old text is gone. Appends and inserts are additions: each
run's is kept, identical text included, as when Letta runs the requests one after the other."""

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

#: Replacing tools: their old/new argument names, and whether the old text must occur once.
_REPLACES = {"core_memory_replace": ("old_content", "new_content", False),
             "memory_replace": ("old_str", "new_str", True)}


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
    """The record with its memory edits applied again, in order, to the blocks' current values,
    each only where its effect is not there yet."""
    tools = ToolContext(blocks=dict(current), messages=[], changed_blocks=set())
    for name, arguments in record.block_edits:
        try:
            _replay(tools, name, arguments)
        except ToolError as exc:
            logger.info("A memory edit (%s) is skipped after a concurrent change to the block: %s", name, exc)
    blocks = [tools.blocks[label] | {"base_version": current[label].get("version", 0)}
              for label in sorted(tools.changed_blocks)]
    return dataclasses.replace(record, blocks=blocks)


def _replay(tools: ToolContext, name: str, arguments: dict[str, Any]) -> None:
    if name not in _REPLACES or not arguments[_REPLACES[name][0]]:
        BUILTIN_TOOLS[name].run(tools, arguments)
        return
    old_key, new_key, unique = _REPLACES[name]
    label, old, new = arguments["label"], arguments[old_key], arguments[new_key]
    value = tools.block(label)["value"]
    spots = open_occurrences(value, old, new)
    if not spots:
        if old in value:
            raise ToolError(f"{old!r} -> {new!r} in block {label!r} is already there (another run made it)")
        raise ToolError(f"{old!r} is no longer in block {label!r}")
    if unique and len(spots) > 1:
        raise ToolError(f"{old!r} now occurs {len(spots)} times in block {label!r}; which one was meant is unknown")
    tools.set_block_value(label, _replace_at(value, spots, old, new))


def open_occurrences(value: str, old: str, new: str) -> list[int]:
    """Where `value.replace(old, new)` would replace, less the occurrences of `old` lying inside an
    occurrence of `new` (possible only when `new` contains `old`): those are the replacement done."""
    done: list[tuple[int, int]] = []
    if old in new:
        at = value.find(new)
        while at != -1:
            done.append((at, at + len(new)))
            at = value.find(new, at + 1)
    spots = []
    at = value.find(old)
    while at != -1:
        if not any(start <= at and at + len(old) <= end for start, end in done):
            spots.append(at)
        at = value.find(old, at + len(old))
    return spots


def _replace_at(value: str, spots: list[int], old: str, new: str) -> str:
    parts, last = [], 0
    for at in spots:
        parts += [value[last:at], new]
        last = at + len(old)
    return "".join(parts) + value[last:]
