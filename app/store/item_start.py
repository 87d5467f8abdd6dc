"""What a worker reads to start batch items, in as few round trips as the guarantees allow: the
chunk's items in one pipeline, then per item one pipeline that claims it (claim_item.lua, still
the one atomic step) and, right behind the claim, reads the agent, the agent's history newer
than what the process holds, and a small request body. Without this an item cost five or six
round trips before its model call, each one blocking the worker's event loop."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import redis

from app.store import keys
from app.store.agents import AgentStore
from app.store.blobs import request_bytes, request_range
from app.store.messages import NewerMessage, newer_args, parse_newer
from app.store.runs import Claim, StoredItem
from app.store.scripts import Scripts

#: A request body up to this size is read with the claim; a larger one after the worker's memory
#: budget admits it (actors/memory.py), as before.
SMALL_REQUEST_BYTES = 64 * 1024


@dataclass(frozen=True)
class ItemStart:
    item: StoredItem
    claim: Claim
    #: The agent with its blocks, read after the claim; None when it was deleted.
    agent: dict[str, Any] | None
    #: The agent's messages newer than the sequence asked for (MessageStore.newer_loaded); None
    #: when they could not come along (the run then reads its history itself).
    newer: list[NewerMessage] | None
    #: The request body (JSON) when it was small enough to come along, else None.
    request: str | None


class ItemStartStore:
    def __init__(self, *, client: redis.Redis, scripts: Scripts) -> None:
        self.client = client
        self.scripts = scripts

    def load_items(self, item_ids: list[str]) -> dict[str, StoredItem]:
        """The chunk's items (those that exist), in one round trip: ids, agent and request size
        never change once an item is stored."""
        with self.client.pipeline(transaction=False) as pipe:
            for item_id in item_ids:
                pipe.hmget(keys.item(item_id), ["id", "batch_id", "agent_id", "request_at"])
                pipe.hstrlen(keys.item(item_id), "request")
            replies = pipe.execute()
        found = {}
        for (found_id, batch_id, agent_id, request_at), size in zip(replies[::2], replies[1::2], strict=True):
            if found_id is not None:
                found[found_id] = StoredItem(id=found_id, batch_id=batch_id, agent_id=agent_id,
                                             request_bytes=size or request_bytes(request_at), request_at=request_at)
        return found

    def claim_and_load(self, item: StoredItem, *, owner: str, lease_s: float, history_after_seq: int,
                       history_limit: int, history_max_bytes: int) -> ItemStart:
        """Claim the item (as RunStore.claim) and read what its run needs, in one round trip. The
        reads run after the claim on the server; the caller uses them only when it is "run"."""
        small = item.request_bytes <= SMALL_REQUEST_BYTES
        for _attempt in range(2):
            with self.client.pipeline(transaction=False) as pipe:
                pipe.evalsha(self.scripts.claim_item.sha, 2, keys.item(item.id), keys.batch(item.batch_id), owner,
                             int(lease_s * 1_000_000))
                pipe.get(keys.agent(item.agent_id))
                pipe.hgetall(keys.agent_blocks(item.agent_id))
                pipe.evalsha(self.scripts.newer_messages.sha, 1, keys.agent_messages(item.agent_id),
                             *newer_args(history_after_seq, history_limit, history_max_bytes))
                if small and item.request_at:
                    pipe.getrange(*request_range(item.batch_id, item.request_at))
                elif small:
                    pipe.hget(keys.item(item.id), "request")
                replies = pipe.execute(raise_on_error=False)
            if not any(isinstance(reply, redis.exceptions.NoScriptError) for reply in replies):
                break
            # Redis lost its script cache (a restart, SCRIPT FLUSH): load the scripts again.
            self.client.script_load(self.scripts.claim_item.script)
            self.client.script_load(self.scripts.newer_messages.script)
            if not isinstance(replies[0], redis.exceptions.NoScriptError):
                replies[3] = None  # the claim ran: keep it, and let the run read its history itself
                break
            # Nothing ran but reads: ask again.
        for reply in replies:
            if isinstance(reply, Exception):
                raise reply
        (action, now_us), raw_agent, blocks, *rest = replies
        newer, *rest = rest
        request = rest[0] if small else None
        agent = None if raw_agent is None else AgentStore.from_stored(json.loads(raw_agent), blocks)
        return ItemStart(item=item, claim=Claim(action, int(now_us)), agent=agent,
                         newer=None if newer is None else parse_newer(newer), request=request)
