"""What a worker reads to start batch items, in as few round trips as the guarantees allow: the
chunk's items (ids, agents, where their requests lie) in two round trips whatever its size; then
the items are claimed, many to a round trip, with everything their runs read
(app/store/claims.py). Without this an item cost five or six round trips before its model call,
each one blocking the worker's event loop."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import redis

from app.store import keys
from app.store.blobs import RequestBlobs, request_bytes
from app.store.messages import NewerMessage
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
        self.blobs = RequestBlobs(client=client, scripts=scripts)

    def load_chunk(self, batch_id: str, *, start: int, stop: int) -> tuple[list[str], dict[str, StoredItem]] | None:
        """The ids of the batch's items at positions `start` to `stop`, and what a worker needs to
        claim each (StoredItem, by id; an item missing there has no request any more); None when
        the batch is gone. For a blob-stored batch this is read from the batch and its small
        place lists, whether or not the items have hashes yet: their claim makes them."""
        with self.client.pipeline(transaction=False) as pipe:
            pipe.hmget(keys.batch(batch_id), ["status", "blob_size", "agent_id"])
            pipe.zrange(keys.batch_items(batch_id), start, stop)
            (status, blob_size, batch_agent), item_ids = pipe.execute()
        if status is None:
            return None
        if not blob_size:
            return item_ids, self.load_items(item_ids) if item_ids else {}
        places = self.blobs.places(batch_id, int(blob_size), list(range(start, start + len(item_ids))))
        found = {}
        for index, item_id in enumerate(item_ids, start):
            if index in places:
                number, first, last, agent_id = places[index]
                found[item_id] = StoredItem(id=item_id, batch_id=batch_id, agent_id=batch_agent or agent_id,
                                            request_bytes=last - first + 1, request_at=f"{number}:{first}:{last}",
                                            index=index)
        return item_ids, found

    def load_items(self, item_ids: list[str]) -> dict[str, StoredItem]:
        """The chunk's items (those that exist), in one round trip: ids, agent and request size
        never change once an item is stored."""
        with self.client.pipeline(transaction=False) as pipe:
            for item_id in item_ids:
                pipe.hmget(keys.item(item_id), ["batch_id", "agent_id", "request_at"])
                pipe.hstrlen(keys.item(item_id), "request")
            replies = pipe.execute()
        found = {}
        for item_id, (batch_id, agent_id, request_at), size in zip(item_ids, replies[::2], replies[1::2],
                                                                   strict=True):
            if batch_id is not None:
                found[item_id] = StoredItem(id=item_id, batch_id=batch_id, agent_id=agent_id,
                                             request_bytes=size or request_bytes(request_at), request_at=request_at)
        return found
