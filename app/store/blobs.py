"""A batch's requests as blobs: one Redis string per `blob_size` requests (one JSON object a
line), written by the create in a few thousand SETs at most, instead of one hash per item (a
100,000-request create spent more than half its time in 100k HSETs).

An item gets its own hash only when a worker is about to claim it (`materialize`). The hash is
small (ids, status, lease, timings, and `request_at`, where its request lies in the blob), so Redis
keeps it in its compact encoding. Until then, readers derive the item's pending state from the
item index and the blob (`unmaterialized`). A batch stored before blobs has no `blob_size` field:
each of its items has had a hash, holding its request in a `request` field, from the start, and
reads as it always did.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import redis

from app.store import keys
from app.store.scripts import Scripts
from app.vocabulary import ItemStatus

#: Requests per blob when the caller names no size (the create passes the chunk size, so that a
#: chunk's items usually lie in one blob).
REQUESTS_PER_BLOB = 50


class RequestBlobs:
    def __init__(self, *, client: redis.Redis, scripts: Scripts | None = None) -> None:
        self.client = client
        self.scripts = scripts or Scripts(client=client)

    def materialize(self, batch_id: str, item_ids: Sequence[str], *, start: int) -> int:
        """Create the pending hash of each item (at positions `start`, `start + 1`, ...) that has
        none yet; return how many were created. Nothing to do for a batch stored before blobs."""
        if not item_ids:
            return 0
        with self.client.pipeline(transaction=False) as pipe:
            pipe.hmget(keys.batch(batch_id), ["blob_size", "agent_id"])
            for item_id in item_ids:
                pipe.hexists(keys.item(item_id), "status")
            (blob_size, batch_agent), *exists = pipe.execute()
        missing = [(item_id, start + offset) for offset, (item_id, found) in enumerate(zip(item_ids, exists,
                                                                                              strict=True))
                   if not found]
        if not blob_size or not missing:
            return 0
        places = self._places(batch_id, int(blob_size), [index for _, index in missing])
        hashes, args = [], [batch_id]
        for item_id, index in missing:
            if index not in places:
                continue  # the blob is gone (the batch was deleted): nothing to run
            number, first, last, agent_id = places[index]
            hashes.append(keys.item(item_id))
            args += [item_id, batch_agent or agent_id, index, f"{number}:{first}:{last}"]
        return self.scripts.materialize_items(keys=hashes, args=args) if hashes else 0

    def materialize_one(self, batch_id: str, item_id: str) -> bool:
        """`materialize` for one item found by id; False if the batch does not list it."""
        index = self.client.zscore(keys.batch_items(batch_id), item_id)
        return index is not None and self.materialize(batch_id, [item_id], start=int(index)) > 0

    def unmaterialized(self, batch_id: str, item_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        """The stored fields of items that have no hash yet (pending, not yet claimed), by id, as
        their hash will hold them; empty for a batch stored before blobs."""
        if not item_ids:
            return {}
        with self.client.pipeline(transaction=False) as pipe:
            pipe.hmget(keys.batch(batch_id), ["blob_size", "agent_id"])
            pipe.zmscore(keys.batch_items(batch_id), list(item_ids))
            (blob_size, batch_agent), indexes = pipe.execute()
        if not blob_size:
            return {}
        found = {item_id: int(index) for item_id, index in zip(item_ids, indexes, strict=True) if index is not None}
        places = {} if batch_agent else self._places(batch_id, int(blob_size), list(found.values()))
        fields = {}
        for item_id, index in found.items():
            if batch_agent:
                agent_id = batch_agent
            elif index in places:
                agent_id = places[index][3]
            else:
                continue
            fields[item_id] = {"id": item_id, "batch_id": batch_id, "agent_id": agent_id, "idx": str(index),
                               "status": ItemStatus.PENDING}
        return fields

    def drop_requests(self, batch_id: str) -> int:
        """Unlink a finished batch's request blobs (their place lists stay: they still name each
        unclaimed item's agent); return how many were there. Call it only once every item has
        ended: nothing reads a request after its item's end, and a claim of an ended item never
        runs it. Safe to repeat."""
        blob_size, total = self.client.hmget(keys.batch(batch_id), ["blob_size", "total"])
        if not blob_size or not total:
            return 0  # stored before blobs, or gone
        count = -(-int(total) // int(blob_size))
        return self.client.unlink(*(keys.batch_requests(batch_id, number) for number in range(count)))

    def load(self, batch_id: str, request_at: str) -> str:
        """An item's request (JSON), from where `request_at` says it lies."""
        return self.client.getrange(*request_range(batch_id, request_at))

    def places(self, batch_id: str, blob_size: int, indexes: list[int]) -> dict[int, tuple[int, int, int, str | None]]:
        """See `_places` (for app/store/item_start.py, which makes no hash before the claim)."""
        return self._places(batch_id, blob_size, indexes)

    def _places(self, batch_id: str, blob_size: int, indexes: list[int]) -> dict[int, tuple[int, int, int, str | None]]:
        """For each wanted index: (blob number, first byte, last byte, agent id if the batch has
        several), from the blobs' small place lists, never the blobs."""
        numbers = sorted({index // blob_size for index in indexes})
        with self.client.pipeline(transaction=False) as pipe:
            for number in numbers:
                pipe.get(keys.batch_request_places(batch_id, number))
            replies = pipe.execute()
        wanted = set(indexes)
        found = {}
        for number, raw in zip(numbers, replies, strict=True):
            if raw is None:
                continue
            places = json.loads(raw)
            # {"agent": id} for a blob of one agent, {"agents": [...]} else; a blob staged before
            # the former has "agents", null when its batch has one agent (named by the batch).
            agents, agent = places.get("agents"), places.get("agent")
            first = 0
            for position, last in enumerate(places["ends"]):
                index = number * blob_size + position
                if index in wanted:
                    found[index] = (number, first, last, agents[position] if agents else agent)
                first = last + 2
        return found


def request_range(batch_id: str, request_at: str) -> tuple[str, int, int]:
    """The GETRANGE arguments of a blob-stored request."""
    number, first, last = (int(part) for part in request_at.split(":"))
    return keys.batch_requests(batch_id, number), first, last


def request_bytes(request_at: str | None) -> int:
    """The size of a blob-stored request, from its `request_at`; 0 when there is none."""
    if not request_at:
        return 0
    _, first, last = request_at.split(":")
    return int(last) - int(first) + 1
