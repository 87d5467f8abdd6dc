"""Batches: a hash per batch (fields, live counters, callback state), its requests in blobs
(app/store/blobs.py), a hash per item once a worker reaches it, and indexes ordered by creation.
State transitions run as Lua scripts (app/lua/)."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import redis

from app.ids import iso_from_ns, new_id
from app.schemas.batches import LettaBatchRequest
from app.store import keys
from app.store.blobs import REQUESTS_PER_BLOB, RequestBlobs
from app.store.model_limits import waiting_for
from app.store.pagination import Order, page
from app.store.scripts import Scripts
from app.store.staging import StagedRequests
from app.tenancy import DEFAULT_TENANT
from app.vocabulary import (
    REQUEST_COUNTERS,
    STOPPED_BATCH_STATUSES,
    UNFINISHED_ITEM_STATUSES,
    BatchStatus,
    ItemStatus,
    stop_reason_for_stop,
)

#: How long an Idempotency-Key keeps answering with the batch it created (the setting's default).
IDEMPOTENCY_TTL_S = 24 * 3600


class IdempotencyKeyReused(Exception):
    """The Idempotency-Key already names a batch made from another request body."""

    def __init__(self, batch_id: str) -> None:
        super().__init__(batch_id)
        self.batch_id = batch_id


def _same_request(stored: str, fingerprint: str) -> str:
    """The batch id stored with a key ("<batch id> <body fingerprint>"), if the bodies match.
    A value written before fingerprints were kept is a bare id: taken as a match."""
    batch_id, _, stored_fingerprint = stored.partition(" ")
    if stored_fingerprint and stored_fingerprint != fingerprint:
        raise IdempotencyKeyReused(batch_id)
    return batch_id


class StagedRequestsLost(Exception):
    """The requests staged for a batch expired before its create could commit them."""


@dataclass(frozen=True)
class StopResult:
    """How a stop went (see stop_batch.lua)."""

    #: stopped | already | conflict | settled | missing
    result: str
    #: for "conflict": the batch's terminal status
    status: str | None = None
    #: for "stopped": items still running (their streams are being closed)
    running: int = 0

    @property
    def needs_finalize(self) -> bool:
        return self.result in ("already", "settled") or (self.result == "stopped" and self.running == 0)


class BatchStore:
    def __init__(self, *, client: redis.Redis, scripts: Scripts) -> None:
        self.client = client
        self.scripts = scripts
        self.blobs = RequestBlobs(client=client, scripts=scripts)

    def stage(self, *, blob_size: int = REQUESTS_PER_BLOB, digest: Any = None) -> StagedRequests:
        """A new batch's requests, written as they come; `create` commits them (app/store/blobs.py)."""
        return StagedRequests(client=self.client, scripts=self.scripts, batch_id=new_id("job"), blob_size=blob_size,
                              digest=digest)

    def create(self, *, requests: Sequence[LettaBatchRequest] = (), callback_url: str | None,
               metadata: dict[str, Any] | None, completion_window_s: float,
               tenant: str = DEFAULT_TENANT, idempotency_key: str | None = None, fingerprint: str = "",
               idempotency_ttl_s: int = IDEMPOTENCY_TTL_S,
               admit: Callable[[], None] | None = None,
               blob_size: int = REQUESTS_PER_BLOB, staged: StagedRequests | None = None) -> tuple[str, bool]:
        """Store a batch and its items in one transaction; return (batch id, created).

        With an idempotency key already used, nothing is stored and the earlier batch id is returned
        if `fingerprint` (of the request body) matches the one stored with the key, else
        IdempotencyKeyReused is raised. The key is written in the same transaction as the batch
        (WATCHed), so a web process that dies half way leaves neither a key without a batch nor two
        batches for one key; a concurrent request with the same key waits for the winner's batch.
        `admit` is called only when a new batch is about to be stored, and may raise to refuse it.
        The requests are `staged` (finished), or else `requests`, stored `blob_size` to a blob.
        """
        if staged is None:
            staged = self.stage(blob_size=blob_size)
            staged.add(requests)
            staged.finish()
        key = keys.idempotency(tenant, idempotency_key) if idempotency_key is not None else None
        staged_keys = staged.staged_keys()
        try:
            while True:
                with self.client.pipeline(transaction=True) as pipe:
                    try:
                        if watched := [*([key] if key is not None else []), *staged_keys]:
                            pipe.watch(*watched)
                        if key is not None and (earlier := pipe.get(key)) is not None:
                            return _same_request(earlier, fingerprint), False
                        if staged_keys and pipe.exists(*staged_keys) != len(staged_keys):
                            raise StagedRequestsLost(staged.batch_id)
                        if admit is not None:
                            admit()
                        self._store(pipe, staged, callback_url=callback_url, metadata=metadata,
                                    completion_window_s=completion_window_s, tenant=tenant, idempotency_key=key,
                                    idempotency_value=f"{staged.batch_id} {fingerprint}",
                                    idempotency_ttl_s=idempotency_ttl_s)
                        staged.committed = True
                        return staged.batch_id, True
                    except redis.WatchError:
                        continue  # a concurrent request with the same key won: answer with its batch
        finally:
            staged.discard_unless_committed()

    def _store(self, pipe: redis.client.Pipeline, staged: StagedRequests, *, callback_url: str | None,
               metadata: dict[str, Any] | None, completion_window_s: float, tenant: str,
               idempotency_key: str | None, idempotency_value: str, idempotency_ttl_s: int) -> None:
        seconds, micros = self.client.time()
        created_us = seconds * 1_000_000 + micros
        batch_id, agent_ids = staged.batch_id, staged.first_index
        seq = self.client.incr(keys.SEQ)
        fields = {
            "id": batch_id, "status": BatchStatus.RUNNING, "created_us": created_us, "updated_us": created_us,
            "agent_id": next(iter(agent_ids)) if len(agent_ids) == 1 else "",
            "callback_url": callback_url or "",
            "metadata": json.dumps({"job_type": "batch_messages", **(metadata or {})}),
            "expires_us": created_us + int(completion_window_s * 1_000_000),
            "created_by_id": tenant,
            **{counter: 0 for counter in REQUEST_COUNTERS},
        }
        fields["total"] = fields["pending"] = staged.count
        fields["blob_size"] = staged.blob_size
        pipe.multi()
        pipe.hset(keys.batch(batch_id), mapping=fields)
        staged.commit(pipe)
        pipe.zadd(keys.BATCHES, {batch_id: seq})
        pipe.zadd(keys.tenant_batches(tenant), {batch_id: seq})
        pipe.zadd(keys.ACTIVE_BATCHES, {batch_id: seq})
        pipe.zadd(keys.DEADLINES, {batch_id: fields["expires_us"]})
        pipe.hincrby(keys.METRIC_COUNTERS, "batches_created_total", 1)
        if idempotency_key is not None:
            pipe.set(idempotency_key, idempotency_value, ex=idempotency_ttl_s)
        pipe.execute()

    def get(self, batch_id: str) -> dict[str, Any] | None:
        fields = self.client.hgetall(keys.batch(batch_id))
        return batch_job(fields) if fields else None

    def queue_get(self, pipe: redis.client.Pipeline, batch_id: str) -> None:
        """`get` on a pipeline: its reply is the stored hash, for `batch_job` (empty: no batch)."""
        pipe.hgetall(keys.batch(batch_id))

    def status(self, batch_id: str) -> str | None:
        """The batch's status; None for a batch that does not exist (or was discarded)."""
        return self.client.hget(keys.batch(batch_id), "status")

    def stop_listener(self) -> redis.client.PubSub:
        """A subscription to the ids of batches being stopped (cancelled or expired)."""
        pubsub = self.client.pubsub(ignore_subscribe_messages=True)
        pubsub.subscribe(keys.STOP_CHANNEL)
        return pubsub

    def statuses(self, batch_ids: list[str]) -> list[str | None]:
        """The status of each batch, in one round trip."""
        with self.client.pipeline(transaction=False) as pipe:
            for batch_id in batch_ids:
                pipe.hget(keys.batch(batch_id), "status")
            return pipe.execute()

    def list(self, *, tenant: str, after: str | None, before: str | None, limit: int,
             order: Order) -> list[dict[str, Any]]:
        ids = page(self.client, keys.tenant_batches(tenant), after=after, before=before, limit=limit, order=order)
        with self.client.pipeline(transaction=False) as pipe:
            for batch_id in ids:
                pipe.hgetall(keys.batch(batch_id))
            return [batch_job(fields) for fields in pipe.execute() if fields]

    def item_ids(self, batch_id: str, *, start: int, stop: int) -> list[str]:
        """Item ids by position, `start` to `stop` inclusive."""
        return self.client.zrange(keys.batch_items(batch_id), start, stop)

    def items_page(self, batch_id: str, *, after: str | None, before: str | None, limit: int,
                   order: Order) -> list[dict[str, Any]]:
        ids = page(self.client, keys.batch_items(batch_id), after=after, before=before, limit=limit, order=order)
        batch_status = self.client.hget(keys.batch(batch_id), "status")
        with self.client.pipeline(transaction=False) as pipe:
            for item_id in ids:
                pipe.hgetall(keys.item(item_id))
            stored = pipe.execute()
        pending = self.blobs.unmaterialized(batch_id, [item_id for item_id, fields in zip(ids, stored, strict=True)
                                                       if not fields])
        return [batch_item({"id": item_id, **fields} if fields else pending[item_id], batch_status)
                for item_id, fields in zip(ids, stored, strict=True) if fields or item_id in pending]

    def stop(self, batch_id: str, *, status: str) -> StopResult:
        """Cancel or expire. `needs_finalize` on the result says whether the caller must enqueue
        finalize: nothing running would do it (safe to repeat: finalize is idempotent)."""
        stop_reason = stop_reason_for_stop(status) or ""
        result, detail = self.scripts.stop_batch(
            keys=[keys.batch(batch_id), keys.METRIC_COUNTERS], args=[status, stop_reason, keys.STOP_CHANNEL, batch_id])
        if result == "stopped":
            return StopResult(result, running=int(detail))
        return StopResult(result, status=detail or None)

    def finalize(self, batch_id: str) -> tuple[str, str]:
        """(finalized | terminal | busy | missing, status)"""
        result, status = self.scripts.finalize_batch(keys=[keys.batch(batch_id), keys.METRIC_COUNTERS])
        return result, status

def _int(fields: dict[str, str], name: str) -> int | None:
    value = fields.get(name)
    return int(value) if value not in (None, "") else None


def _iso_us(fields: dict[str, str], name: str) -> str | None:
    micros = _int(fields, name)
    return None if micros is None else iso_from_ns(micros * 1000)


def batch_job(fields: dict[str, str]) -> dict[str, Any]:
    """A stored batch hash in the BatchJob shape of the API."""
    created_us = int(fields["created_us"])
    first_token_us = _int(fields, "first_token_us")
    return {
        "id": fields["id"],
        "agent_id": fields.get("agent_id") or None,
        "background": None,
        "callback_error": fields.get("callback_error") or None,
        "callback_sent_at": _iso_us(fields, "callback_sent_us"),
        "callback_status_code": _int(fields, "callback_status_code"),
        "callback_url": fields.get("callback_url") or None,
        "completed_at": _iso_us(fields, "completed_us"),
        "created_at": iso_from_ns(created_us * 1000),
        "created_by_id": fields.get("created_by_id"),
        "job_type": "batch",
        "last_updated_by_id": fields.get("created_by_id"),
        "metadata": json.loads(fields.get("metadata") or "{}"),
        "status": fields["status"],
        "stop_reason": fields.get("stop_reason") or None,
        "total_duration_ns": _int(fields, "total_duration_ns"),
        "ttft_ns": None if first_token_us is None else max(0, (first_token_us - created_us) * 1000),
        "updated_at": _iso_us(fields, "updated_us"),
        "request_counts": {counter: int(fields.get(counter) or 0) for counter in REQUEST_COUNTERS},
    }


def batch_item(fields: dict[str, str], batch_status: str | None) -> dict[str, Any]:
    status = fields["status"]
    if status == ItemStatus.PENDING and batch_status in STOPPED_BATCH_STATUSES:
        # stop_batch counts unstarted items as stopped at once; their hashes catch up when a
        # worker reaches them.
        status = batch_status
    return {
        "id": fields["id"],
        "batch_id": fields["batch_id"],
        "agent_id": fields["agent_id"],
        "index": int(fields["idx"]),
        "status": status,
        "stop_reason": fields.get("stop_reason") or stop_reason_for_stop(status),
        "ttft_ns": _int(fields, "ttft_ns"),
        "total_duration_ns": _int(fields, "total_duration_ns"),
        "error": fields.get("error") or None,
        "attempts": int(fields.get("attempts") or 0),
        "started_at": _iso_us(fields, "started_us"),
        "completed_at": _iso_us(fields, "completed_us"),
        "waiting": waiting_for(fields) if status in UNFINISHED_ITEM_STATUSES else None,
    }
