"""Committing the ends of many batch items in one round trip (app/lua/commit_items.lua): one script
call per batch, each item checked and written on its own (exactly once, its own lease), the
batch's counters, the metrics, the messages and their indexes written once per call."""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import redis

from app.redis_retry import UNAVAILABLE, as_unavailable
from app.store import keys
from app.store.lua_json import lua_json, lua_text
from app.store.monitor import METRIC_ARGS, METRIC_KEYS
from app.store.runs import ALREADY_ANSWERED, Commit, RunRecord, left_pending, stored_block
from app.store.scripts import Scripts
from app.vocabulary import StopReason

#: Message text sent to Redis in one round trip of a commit flush, at most (a single larger run
#: goes alone).
COMMIT_SLICE_BYTES = 4 * 1024 * 1024


@dataclass(frozen=True)
class ItemCommit:
    """One batch item's run to commit."""

    batch_id: str
    item_id: str
    agent_id: str
    record: RunRecord


class CommitStore:
    def __init__(self, *, client: redis.Redis, scripts: Scripts) -> None:
        self.client = client
        self.scripts = scripts

    def commit_many(self, entries: Sequence[ItemCommit], *, owner: str = "") -> list[Commit]:
        """As `commit_each`, raising the first error in place of the answers."""
        answers = self.commit_each(entries, owner=owner)
        for answer in answers:
            if isinstance(answer, Exception):
                raise answer
        return answers  # type: ignore[return-value]

    def commit_each(self, entries: Sequence[ItemCommit], *, owner: str = "") -> list[Commit | Exception]:
        """Commit each entry (in order: an agent's runs get their messages' sequence numbers in
        this order) and answer one Commit per entry. `owner`: an item running under another
        owner's live lease commits nothing ('' checks no lease). Entries go to Redis in slices of
        about COMMIT_SLICE_BYTES of messages, one round trip each: serializing a flush of large
        runs at once would hold several copies of all of them (the worker's memory budget
        counts each run's own, actors/memory.py).

        A call that fails (one per batch and slice) wrote nothing, and its error stands in place
        of each of its entries' answers; the other calls' writes stand, so their answers are
        kept: sent again, an entry already written would only meet itself as a duplicate. After
        an outage nothing more is sent: its slice and the ones after it answer its error."""
        answers: list[Commit | Exception] = []
        for part in _slices(entries):
            try:
                answers += self._commit(part, owner)
            except UNAVAILABLE as exc:
                return answers + [exc] * (len(entries) - len(answers))
            except Exception as exc:  # raised for the slice as a whole (its arguments, say)
                answers += [exc] * len(part)
        return answers

    def _commit(self, entries: Sequence[ItemCommit], owner: str) -> list[Commit | Exception]:
        by_batch: dict[str, list[int]] = defaultdict(list)
        for position, entry in enumerate(entries):
            by_batch[entry.batch_id].append(position)
        calls = {batch_id: _call(batch_id, [entries[p] for p in positions], owner)
                 for batch_id, positions in by_batch.items()}
        answers: dict[str, list] = {}
        todo = list(calls)
        for _attempt in range(2):
            with self.client.pipeline(transaction=False) as pipe:
                for batch_id in todo:
                    call_keys, args = calls[batch_id]
                    pipe.evalsha(self.scripts.commit_items.sha, len(call_keys), *call_keys, *args)
                replies = pipe.execute(raise_on_error=False)
            for batch_id, reply in zip(todo, replies, strict=True):
                answers[batch_id] = as_unavailable(reply) if isinstance(reply, Exception) else reply
            todo = [batch_id for batch_id, reply in zip(todo, replies, strict=True)
                    if isinstance(reply, redis.exceptions.NoScriptError)]
            if not todo:
                break
            # Redis lost its script cache (a restart, SCRIPT FLUSH): those calls did not run.
            self.client.script_load(self.scripts.commit_items.script)
        commits: list[Commit | Exception | None] = [None] * len(entries)
        for batch_id, positions in by_batch.items():
            reply = answers[batch_id]
            if isinstance(reply, Exception):
                for position in positions:
                    commits[position] = reply
                continue
            status, *rest = reply
            for n, position in enumerate(positions):
                committed, remaining, stale, refused = rest[4 * n:4 * n + 4]
                commits[position] = Commit(committed == 1, int(remaining), status, stale or None,
                                           refused=refused == 1)
        return commits  # type: ignore[return-value]


def _slices(entries: Sequence[ItemCommit]) -> Iterator[Sequence[ItemCommit]]:
    """Consecutive runs of entries of about COMMIT_SLICE_BYTES of message text each (one at least)."""
    first, size = 0, 0
    for position, entry in enumerate(entries):
        weight = _weight(entry.record)
        if position > first and size + weight > COMMIT_SLICE_BYTES:
            yield entries[first:position]
            first, size = position, 0
        size += weight
    if first < len(entries):
        yield entries[first:]


def _weight(record: RunRecord) -> int:
    """About the bytes of the record's messages, without serializing them."""
    size = 0
    for message in record.messages:
        size += 512
        for part in message.get("content") or []:
            if isinstance(part, dict):
                size += sum(len(value) for value in part.values() if isinstance(value, str))
                source = part.get("source")
                if isinstance(source, dict):
                    size += len(source.get("data") or "")
        for call in message.get("tool_calls") or []:
            size += len(str(call))
    return size


def _call(batch_id: str, entries: Sequence[ItemCommit], owner: str) -> tuple[list[str], list[str | int]]:
    """KEYS and ARGV of commit_items.lua for one batch's entries."""
    agents = list(dict.fromkeys(entry.agent_id for entry in entries))
    number = {agent_id: n for n, agent_id in enumerate(agents, 1)}
    call_keys = [keys.SEQ, keys.batch(batch_id), keys.batch_messages(batch_id), *METRIC_KEYS]
    for agent_id in agents:
        call_keys += [keys.agent(agent_id), keys.agent_blocks(agent_id), keys.agent_messages(agent_id),
                      keys.agent_pending_approval(agent_id)]
    call_keys += [keys.item(entry.item_id) for entry in entries]
    items = []
    for entry in entries:
        record = entry.record
        items.append({
            "agent": number[entry.agent_id],
            "messages": [[message["id"], json.dumps(message)] for message in record.messages],
            "blocks": [[block["label"], lua_json(stored_block(block)), block.get("base_version", 0)]
                       for block in record.blocks],
            "outcome": record.outcome, "stop_reason": record.stop_reason or "",
            "ttft_ns": "" if record.ttft_ns is None else str(record.ttft_ns),
            "total_ns": "" if record.total_duration_ns is None else str(record.total_duration_ns),
            "error": lua_text(record.error or ""),
            "first_token_us": "" if record.first_token_us is None else str(record.first_token_us),
            "answers": record.answers_approval or "", "leaves": left_pending(record.messages) or "",
        })
    minute_prefix, ttft_bounds, duration_bounds = METRIC_ARGS
    args: list[str | int] = [keys.MESSAGE_PREFIX, minute_prefix, ttft_bounds, duration_bounds, ALREADY_ANSWERED,
                             StopReason.ERROR, owner, json.dumps(items), len(agents)]
    return call_keys, args
