"""Claiming many batch items in one round trip: the items a worker has ready in the same event-loop
tick are claimed by one `claim_items.lua` call per batch, and what their runs need is read right
behind the claims in the same pipeline, once per agent (record, blocks, history newer than what
the process holds) and once per stretch of a blob (the small requests, one GETRANGE), instead of
once per item."""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Callable, Sequence

import redis

from app.redis_retry import as_unavailable
from app.store import keys
from app.store.agents import AgentStore
from app.store.item_start import SMALL_REQUEST_BYTES, ItemStart
from app.store.messages import newer_args, parse_newer
from app.store.runs import Claim, StoredItem
from app.store.scripts import Scripts

#: Requests read with one GETRANGE of their blob, at most this many bytes in all (the span from
#: the first to the last); beyond it, one GETRANGE each.
REQUEST_SPAN_MAX_BYTES = 1024 * 1024


class ClaimStore:
    def __init__(self, *, client: redis.Redis, scripts: Scripts) -> None:
        self.client = client
        self.scripts = scripts

    def claim_many(self, items: Sequence[StoredItem], *, owner: str, lease_s: float,
                   history_after_seq: Callable[[str], int], history_limit: int,
                   history_max_bytes: int) -> list[ItemStart]:
        """Claim each item (as claim_item.lua: `Claim.action`) and read what its run needs, in one
        round trip; the reads run after the claims on the server and count only for "run"."""
        by_batch: dict[str, list[int]] = defaultdict(list)
        for position, item in enumerate(items):
            by_batch[item.batch_id].append(position)
        agent_ids = list(dict.fromkeys(item.agent_id for item in items))
        spans, singles = _request_reads(items)
        for _attempt in range(2):
            with self.client.pipeline(transaction=False) as pipe:
                for batch_id, positions in by_batch.items():
                    args: list[str | int] = [owner, int(lease_s * 1_000_000), batch_id]
                    for position in positions:
                        item = items[position]
                        made = item.index is not None and item.request_at
                        args += [item.id, item.agent_id, item.index if made else "", item.request_at if made else ""]
                    pipe.evalsha(self.scripts.claim_items.sha, 1 + len(positions), keys.batch(batch_id),
                                 *(keys.item(items[position].id) for position in positions), *args)
                for agent_id in agent_ids:
                    pipe.get(keys.agent(agent_id))
                    pipe.hgetall(keys.agent_blocks(agent_id))
                    pipe.evalsha(self.scripts.newer_messages.sha, 1, keys.agent_messages(agent_id),
                                 *newer_args(history_after_seq(agent_id), history_limit, history_max_bytes))
                for key, first, last, _positions in spans:
                    pipe.getrange(key, first, last)
                for position in singles:
                    pipe.hget(keys.item(items[position].id), "request")
                replies = pipe.execute(raise_on_error=False)
            if not any(isinstance(reply, redis.exceptions.NoScriptError) for reply in replies):
                break
            # Redis lost its script cache (a restart, SCRIPT FLUSH): load the scripts.
            self.client.script_load(self.scripts.claim_items.script)
            self.client.script_load(self.scripts.newer_messages.script)
            if not any(isinstance(reply, redis.exceptions.NoScriptError) for reply in replies[:len(by_batch)]):
                break  # the claims ran: keep them; a run whose history did not come reads it itself
            # The claims did not run: ask again.
        for reply in replies:
            if isinstance(reply, Exception) and not isinstance(reply, redis.exceptions.NoScriptError):
                raise as_unavailable(reply)
        replies = iter(replies)
        claims: dict[int, Claim] = {}
        for positions in by_batch.values():
            claimed = next(replies)
            if isinstance(claimed, Exception):
                raise claimed
            now_us, *actions = claimed
            for position, action in zip(positions, actions, strict=True):
                claims[position] = Claim(action, int(now_us))
        agents, newer = {}, {}
        for agent_id in agent_ids:
            raw, blocks, found = next(replies), next(replies), next(replies)
            agents[agent_id] = None if raw is None else AgentStore.from_stored(json.loads(raw), blocks)
            newer[agent_id] = None if isinstance(found, Exception) else parse_newer(found)
        requests: dict[int, str | None] = {}
        for _key, first, _last, positions in spans:
            # GETRANGE counts bytes: cut the span as bytes, then each request back to text.
            span = next(replies).encode()
            for position in positions:
                item_first, item_last = _range(items[position])
                requests[position] = span[item_first - first:item_last - first + 1].decode()
        for position in singles:
            requests[position] = next(replies)
        return [ItemStart(item=item, claim=claims[position], agent=agents[item.agent_id],
                          newer=newer[item.agent_id] if agents[item.agent_id] is not None else None,
                          request=requests.get(position))
                for position, item in enumerate(items)]


def _range(item: StoredItem) -> tuple[int, int]:
    _number, first, last = item.request_at.split(":")
    return int(first), int(last)


def _request_reads(items: Sequence[StoredItem]) -> tuple[list[tuple[str, int, int, list[int]]], list[int]]:
    """The GETRANGEs that read the small blob-stored requests, each over a stretch of one blob
    (key, first byte, last byte, positions of the items in it), and the positions of the small
    requests stored in their item's hash (a batch stored before blobs)."""
    spans: list[tuple[str, int, int, list[int]]] = []
    singles: list[int] = []
    by_blob: dict[tuple[str, int], list[int]] = defaultdict(list)
    for position, item in enumerate(items):
        if item.request_bytes > SMALL_REQUEST_BYTES:
            continue
        if item.request_at:
            by_blob[item.batch_id, int(item.request_at.split(":")[0])].append(position)
        else:
            singles.append(position)
    for (batch_id, number), positions in by_blob.items():
        key = keys.batch_requests(batch_id, number)
        positions.sort(key=lambda position: _range(items[position]))
        current: list[int] = []
        for position in positions:
            if current and _range(items[position])[1] - _range(items[current[0]])[0] >= REQUEST_SPAN_MAX_BYTES:
                spans.append(_span(key, items, current))
                current = []
            current.append(position)
        if current:
            spans.append(_span(key, items, current))
    return spans, singles


def _span(key: str, items: Sequence[StoredItem], positions: list[int]) -> tuple[str, int, int, list[int]]:
    return key, _range(items[positions[0]])[0], max(_range(items[p])[1] for p in positions), positions
