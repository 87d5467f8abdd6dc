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
import threading
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

import redis

from app.schemas.batches import LettaBatchRequest
from app.store import keys
from app.store.scripts import Scripts
from app.vocabulary import ItemStatus

#: Requests per blob when the caller names no size (the create passes the chunk size, so that a
#: chunk's items usually lie in one blob).
REQUESTS_PER_BLOB = 50
#: Bytes of blobs a process keeps after materializing a chunk, so that its items' requests load
#: without another round trip (blobs never change once written).
RECENT_BLOB_BYTES = 16 * 1024 * 1024


class _RecentBlobs:
    """The blobs this process read last, by key, up to RECENT_BLOB_BYTES."""

    def __init__(self, *, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._blobs: OrderedDict[str, bytes] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def put(self, key: str, blob: bytes) -> None:
        if len(blob) > self.max_bytes:
            return
        with self._lock:
            if key in self._blobs:
                return
            self._blobs[key] = blob
            self._bytes += len(blob)
            while self._bytes > self.max_bytes:
                self._bytes -= len(self._blobs.popitem(last=False)[1])

    def get(self, key: str) -> bytes | None:
        with self._lock:
            return self._blobs.get(key)


_recent = _RecentBlobs(max_bytes=RECENT_BLOB_BYTES)


def write_requests(pipe: redis.client.Pipeline, scripts: Scripts, batch_id: str, item_ids: list[str],
                   requests: Sequence[LettaBatchRequest], *, blob_size: int) -> None:
    """Queue the writes of a batch's item index and blobs on `pipe` (the create's transaction).
    The ids all have one length (new_ids)."""
    scripts.add_items(keys=[keys.batch_items(batch_id)], args=["".join(item_ids), len(item_ids[0])], client=pipe)
    # The serializer itself, not model_dump_json: a third faster over 100,000 requests. Defaults
    # stay: a union member's default `type` tells it apart on reading (a "tool" approval item).
    to_json = LettaBatchRequest.__pydantic_serializer__.to_json
    for number, start in enumerate(range(0, len(requests), blob_size)):
        pipe.set(keys.batch_requests(batch_id, number), b"\n".join(
            to_json(request, exclude_none=True)
            for request in requests[start:start + blob_size]))


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
        lines = self._lines(batch_id, int(blob_size), [index for _, index in missing])
        hashes, args = [], [batch_id]
        for item_id, index in missing:
            if index not in lines:
                continue  # the blob is gone (the batch was deleted): nothing to run
            number, first, last, line = lines[index]
            hashes.append(keys.item(item_id))
            args += [item_id, batch_agent or json.loads(line)["agent_id"], index, f"{number}:{first}:{last}"]
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
        lines = {} if batch_agent else self._lines(batch_id, int(blob_size), list(found.values()))
        fields = {}
        for item_id, index in found.items():
            if batch_agent:
                agent_id = batch_agent
            elif index in lines:
                agent_id = json.loads(lines[index][3])["agent_id"]
            else:
                continue
            fields[item_id] = {"id": item_id, "batch_id": batch_id, "agent_id": agent_id, "idx": str(index),
                               "status": ItemStatus.PENDING}
        return fields

    def load(self, batch_id: str, request_at: str) -> str:
        """An item's request (JSON), from where `request_at` says it lies."""
        if (request := cached_request(batch_id, request_at)) is not None:
            return request
        number, first, last = (int(part) for part in request_at.split(":"))
        return self.client.getrange(keys.batch_requests(batch_id, number), first, last)

    def _lines(self, batch_id: str, blob_size: int, indexes: list[int]) -> dict[int, tuple[int, int, int, str]]:
        """For each wanted index: (blob number, first byte, last byte, the line)."""
        numbers = sorted({index // blob_size for index in indexes})
        with self.client.pipeline(transaction=False) as pipe:
            for number in numbers:
                pipe.get(keys.batch_requests(batch_id, number))
            blobs = pipe.execute()
        wanted = set(indexes)
        found = {}
        for number, blob in zip(numbers, blobs, strict=True):
            if blob is None:
                continue
            data = blob.encode()
            _recent.put(keys.batch_requests(batch_id, number), data)
            offset = 0
            for position, line in enumerate(data.split(b"\n")):
                index = number * blob_size + position
                if index in wanted:
                    found[index] = (number, offset, offset + len(line) - 1, line.decode())
                offset += len(line) + 1
        return found


def cached_request(batch_id: str, request_at: str | None) -> str | None:
    """A blob-stored request, if this process holds its blob (no round trip); else None."""
    if not request_at:
        return None
    number, first, last = (int(part) for part in request_at.split(":"))
    blob = _recent.get(keys.batch_requests(batch_id, number))
    return None if blob is None else blob[first:last + 1].decode()


def request_bytes(request_at: str | None) -> int:
    """The size of a blob-stored request, from its `request_at`; 0 when there is none."""
    if not request_at:
        return 0
    _, first, last = request_at.split(":")
    return int(last) - int(first) + 1
