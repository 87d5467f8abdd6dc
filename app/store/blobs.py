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

import contextlib
import json
from collections.abc import Sequence
from typing import Any

import redis

from app.ids import new_ids_joined
from app.schemas.batches import LettaBatchRequest
from app.store import keys
from app.store.scripts import Scripts
from app.vocabulary import ItemStatus

#: Requests per blob when the caller names no size (the create passes the chunk size, so that a
#: chunk's items usually lie in one blob).
REQUESTS_PER_BLOB = 50
#: How long the keys written while a create reads its body live should it never commit them (the
#: body was refused late, or the web process died): the commit makes them permanent.
STAGED_TTL_S = 3600
_ITEM_ID_PREFIX = "batch_item"
_ITEM_ID_WIDTH = len(_ITEM_ID_PREFIX) + 37
#: Staged writes are sent to Redis once this many bytes of blobs are queued.
STAGE_FLUSH_BYTES = 256 * 1024


class StagedRequests:
    """A new batch's requests written as they arrive, a blob at a time, under keys no reader
    looks at until the create commits them (they expire otherwise): the create never holds all
    its requests, nor their encoded lines. `first_index` maps each agent to its first request.

    The writes go out on a connection of their own without waiting for their replies, which are
    read once by `finish`: Redis stores a blob while the next is parsed and validated.
    """

    def __init__(self, *, client: redis.Redis, scripts: Scripts, batch_id: str, blob_size: int,
                 digest: Any = None) -> None:
        self.batch_id = batch_id
        self.blob_size = blob_size
        self.count = 0
        self.first_index: dict[str, int] = {}
        #: Updated with every line, each followed by a newline (e.g. a hashlib object), if given.
        self.digest = digest
        #: Set by the create once its transaction has made the staged keys permanent.
        self.committed = False
        self._client = client
        self._scripts = scripts
        self._connection: Any = None
        self._unread = 0
        self._commands: list[tuple[Any, ...]] = []
        self._queued_bytes = 0
        self._unlisted = 0
        self._pending: list[LettaBatchRequest] = []
        self._blobs = 0
        self._discarded = False

    def add(self, requests: Sequence[LettaBatchRequest]) -> None:
        """Stage requests that come next in the batch (written a full blob at a time)."""
        pending = self._pending + list(requests) if self._pending else requests
        full = len(pending) - len(pending) % self.blob_size
        for start in range(0, full, self.blob_size):
            self._write(pending[start:start + self.blob_size])
        self._pending = list(pending[full:])

    def finish(self) -> None:
        """Write what is left and wait for every write: all staged keys exist once this returns."""
        if self._pending:
            self._write(self._pending)
            self._pending = []
        self.flush()
        if self._connection is None:
            return
        connection, self._connection = self._connection, None
        try:
            for _ in range(self._unread):
                connection.read_response()
        except BaseException:
            connection.disconnect()  # replies may be left unread: never hand it back as it is
            raise
        finally:
            self._unread = 0
            self._client.connection_pool.release(connection)

    def staged_keys(self) -> list[str]:
        """Every key staged (the commit checks they are all there, and makes them permanent)."""
        if not self._blobs:
            return []
        return [keys.batch_items(self.batch_id)] + [
            key for number in range(self._blobs)
            for key in (keys.batch_requests(self.batch_id, number), keys.batch_request_places(self.batch_id, number))]

    def commit(self, pipe: redis.client.Pipeline) -> None:
        """Queue, in the create's transaction, what makes the staged keys permanent."""
        if self._blobs:
            self._scripts.persist_keys(keys=self.staged_keys(), client=pipe)

    def discard_unless_committed(self) -> None:
        """Delete what was staged, unless the create committed it (best effort: the keys expire
        anyway)."""
        if self.committed or self._discarded:
            return
        self._discarded = True
        self._commands = []
        if self._connection is not None:
            self._await_sent()
        staged = self.staged_keys()
        try:
            for start in range(0, len(staged), 1000):
                self._client.unlink(*staged[start:start + 1000])
        except redis.RedisError:
            pass

    def _await_sent(self) -> None:
        """Read the replies of every write sent: the delete that follows goes on another
        connection, and would otherwise run before writes still on their way, which would then
        stage keys nothing deletes (an item index without a time to live)."""
        connection, self._connection = self._connection, None
        try:
            for _ in range(self._unread):
                with contextlib.suppress(redis.ResponseError):  # that write failed: nothing of it to delete
                    connection.read_response()
        except BaseException as exc:
            connection.disconnect()
            if not isinstance(exc, redis.RedisError):
                raise
        finally:
            self._unread = 0
            self._client.connection_pool.release(connection)

    def _write(self, requests: Sequence[LettaBatchRequest]) -> None:
        # The serializer itself, not model_dump_json: a third faster over 100,000 requests. Defaults
        # stay: a union member's default `type` tells it apart on reading (a "tool" approval item).
        to_json = LettaBatchRequest.__pydantic_serializer__.to_json
        lines = [to_json(request, exclude_none=True) for request in requests]
        blob = b"\n".join(lines)
        ends, end = [], -2
        for line in lines:
            end += len(line) + 1
            ends.append(end)
        agents = [request.agent_id for request in requests]
        distinct = set(agents)
        for agent_id in distinct - self.first_index.keys():
            self.first_index[agent_id] = self.count + agents.index(agent_id)
        # A blob of one agent names it once (most batches have one agent, and Redis keeps every byte).
        places = {"ends": ends, "agent": agents[0]} if len(distinct) == 1 else {"ends": ends, "agents": agents}
        number = self._blobs
        self._commands += [
            ("SET", keys.batch_requests(self.batch_id, number), blob, "EX", STAGED_TTL_S),
            ("SET", keys.batch_request_places(self.batch_id, number), json.dumps(places), "EX", STAGED_TTL_S)]
        if self.digest is not None:
            self.digest.update(blob)
            self.digest.update(b"\n")
        self._blobs += 1
        self.count += len(requests)
        self._unlisted += len(requests)
        self._queued_bytes += len(blob)
        if self._queued_bytes >= STAGE_FLUSH_BYTES:
            self.flush()

    def flush(self) -> None:
        """Send the queued writes, and list their items' ids; the replies are read by `finish`."""
        if self._unlisted:
            items, first = keys.batch_items(self.batch_id), self.count - self._unlisted
            self._commands.append(("EVALSHA", self._scripts.add_items.sha, 1, items,
                                   new_ids_joined(_ITEM_ID_PREFIX, self._unlisted), _ITEM_ID_WIDTH, first))
            if first == 0:
                self._commands.append(("EXPIRE", items, STAGED_TTL_S))
            self._unlisted = 0
        if not self._commands:
            return
        if self._connection is None:
            self._client.script_load(self._scripts.add_items.script)  # EVALSHA's script, in case Redis restarted
            self._connection = self._client.connection_pool.get_connection()
        # A health check (a PING, when the connection was idle for a while) would read the reply
        # of an earlier write as its own: only before the first.
        self._connection.send_packed_command(self._connection.pack_commands(self._commands),
                                             check_health=self._unread == 0)
        self._unread += len(self._commands)
        self._commands = []
        self._queued_bytes = 0


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
