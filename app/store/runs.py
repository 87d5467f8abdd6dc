"""The worker's side of a batch item: claim it under a lease, keep the lease alive, and commit
its outcome, messages and memory changes exactly once (app/lua/claim_item.lua, and for many items
at once claim_items.lua, commit_items.lua: app/store/claims.py, commits.py); and the commit of a
run outside a batch (commit_run.lua)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import redis

from app.store import keys
from app.store.blobs import RequestBlobs, request_bytes
from app.store.lua_json import lua_json
from app.store.scripts import Scripts

#: The error of a run that answered an approval another request had already answered.
ALREADY_ANSWERED = "This approval was already answered by another request; this answer was not applied."


@dataclass(frozen=True)
class Claim:
    #: run | busy | done | stopped | stop_running | missing (see claim_item.lua)
    action: str
    #: Redis server time of the claim, in microseconds.
    now_us: int


@dataclass(frozen=True)
class StoredItem:
    """What a worker needs to know of a batch item before it loads its request."""

    id: str
    batch_id: str
    agent_id: str
    #: Size of the stored request body (JSON), in bytes.
    request_bytes: int
    #: Where the request lies in its batch's blob ("<blob>:<first>:<last>"); None for a batch
    #: stored before blobs (its item hash holds the request).
    request_at: str | None = None
    #: The item's position in its batch, when its hash may not exist yet: the claim makes it
    #: (claim_items.lua). None for an item whose hash exists (a batch stored before blobs).
    index: int | None = None


@dataclass
class RunRecord:
    """Everything one run leaves behind."""

    #: succeeded | errored | cancelled | expired
    outcome: str
    stop_reason: str | None
    messages: list[dict[str, Any]] = field(default_factory=list)
    #: Memory blocks the run changed, whole, each with the version it was read at
    #: (`base_version`); the stored block gets base_version + 1.
    blocks: list[dict[str, Any]] = field(default_factory=list)
    #: The memory-tool calls that produced `blocks` (tool name, arguments), to replay them on a
    #: newer value when another run of the agent changed a block first.
    block_edits: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    ttft_ns: int | None = None
    total_duration_ns: int | None = None
    error: str | None = None
    #: Redis-clock microseconds of the first streamed token, when there was one.
    first_token_us: int | None = None
    #: Id of the approval request this run answers (it resumed a paused run), if any.
    answers_approval: str | None = None


@dataclass(frozen=True)
class Commit:
    committed: bool
    #: Items of the batch not yet ended (-1 when nothing was written).
    remaining: int
    batch_status: str
    #: A block label that changed since the run read it: nothing was written; replay and retry.
    stale_block: str | None = None
    #: The run answered an approval another run had answered first: none of its messages or
    #: blocks were written (a batch item is recorded as errored with ALREADY_ANSWERED).
    refused: bool = False


class RunStore:
    def __init__(self, *, client: redis.Redis, scripts: Scripts) -> None:
        self.client = client
        self.scripts = scripts
        self.blobs = RequestBlobs(client=client, scripts=scripts)

    def load_item(self, item_id: str) -> StoredItem:
        with self.client.pipeline(transaction=False) as pipe:
            pipe.hmget(keys.item(item_id), ["batch_id", "agent_id", "request_at"])
            pipe.hstrlen(keys.item(item_id), "request")
            (batch_id, agent_id, request_at), size = pipe.execute()
        if batch_id is None:
            raise LookupError(f"batch item {item_id} does not exist")
        return StoredItem(id=item_id, batch_id=batch_id, agent_id=agent_id,
                          request_bytes=size or request_bytes(request_at), request_at=request_at)

    def load_request(self, item_id: str) -> str:
        """The item's request body (LettaBatchRequest JSON): from the batch's blob, or from the
        item's own `request` field for a batch stored before blobs."""
        request, batch_id, request_at = self.client.hmget(keys.item(item_id), ["request", "batch_id", "request_at"])
        return request if request is not None else self.blobs.load(batch_id, request_at)

    def claim(self, *, batch_id: str, item_id: str, owner: str, lease_s: float) -> Claim:
        claim = self._claim(batch_id, item_id, owner, lease_s)
        # A caller that did not materialize its chunk first (app/store/blobs.py) still gets a claim.
        if claim.action == "missing" and self.blobs.materialize_one(batch_id, item_id):
            claim = self._claim(batch_id, item_id, owner, lease_s)
        return claim

    def _claim(self, batch_id: str, item_id: str, owner: str, lease_s: float) -> Claim:
        action, now_us = self.scripts.claim_item(
            keys=[keys.item(item_id), keys.batch(batch_id)], args=[owner, int(lease_s * 1_000_000)])
        return Claim(action, int(now_us))

    def renew(self, *, item_ids: list[str], owner: str, lease_s: float) -> int:
        if not item_ids:
            return 0
        return self.scripts.renew_leases(keys=[keys.item(i) for i in item_ids], args=[owner, int(lease_s * 1_000_000)])

    def release(self, *, item_id: str, owner: str) -> bool:
        return bool(self.scripts.release_item(keys=[keys.item(item_id)], args=[owner]))

    def requeue(self, *, batch_id: str, item_id: str, owner: str) -> bool:
        """Give back an item that has not made its first model call (it waited for capacity): it is
        pending again, so a stop counts it at once (requeue_item.lua). False when not held."""
        return bool(self.scripts.requeue_item(keys=[keys.item(item_id), keys.batch(batch_id)], args=[owner]))

    def commit(self, *, agent_id: str, record: RunRecord, batch_id: str | None = None,
               item_id: str | None = None) -> Commit:
        if batch_id is not None and item_id is not None:
            # A batch item commits as the worker commits many at once (imported here: commits.py
            # builds on this module's records).
            from app.store.commits import CommitStore, ItemCommit

            entry = ItemCommit(batch_id=batch_id, item_id=item_id, agent_id=agent_id, record=record)
            return CommitStore(client=self.client, scripts=self.scripts).commit_many([entry])[0]
        payload = json.dumps({
            "messages": [[message["id"], json.dumps(message)] for message in record.messages],
            "blocks": [[block["label"], lua_json(stored_block(block)), block.get("base_version", 0)]
                       for block in record.blocks],
        })
        committed, remaining, batch_status, stale, refused = self.scripts.commit_run(
            keys=[keys.SEQ, keys.agent_messages(agent_id), keys.agent_blocks(agent_id), keys.agent(agent_id),
                  keys.agent_pending_approval(agent_id)],
            args=[keys.MESSAGE_PREFIX, payload, record.answers_approval or "", left_pending(record.messages) or ""],
        )
        return Commit(committed == 1, int(remaining), batch_status, stale or None, refused=refused == 1)


def left_pending(messages: list[dict[str, Any]]) -> str | None:
    """The id of the approval request the run ends waiting on: its last approval message, when
    that is a request (it has tool_calls) rather than a response."""
    for message in reversed(messages):
        if message["role"] == "approval":
            return message["id"] if message.get("tool_calls") else None
    return None


def stored_block(block: dict[str, Any]) -> dict[str, Any]:
    stored = {key: value for key, value in block.items() if key != "base_version"}
    return stored | {"version": block.get("base_version", 0) + 1}
