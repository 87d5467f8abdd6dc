"""A create's requests staged in Redis while its body is still being read (app/api/batch_create.py):
blobs, their place lists and their items' ids are written a few hundred KiB at a time, under keys
that expire (STAGED_TTL_S) until the create's transaction makes them permanent, so that a body
refused at any point, or a web process that dies, leaves nothing behind (app/store/blobs.py says
how the blobs are laid out and read).
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
