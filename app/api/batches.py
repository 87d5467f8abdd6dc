"""The Letta Batches API: create, list, retrieve, cancel, a batch's messages, and Batchline's
per-request view."""

from __future__ import annotations

import logging
from typing import Any

import redis
from flask import Response, jsonify
from flask_openapi3 import APIBlueprint, Tag

from app.api.auth import NOT_READ, SECURITY, current_tenant, read_reply, read_with_lookup
from app.api.errors import ApiError, invalid_field, not_found
from app.api.idempotency import body_fingerprint, idempotency_key
from app.api.rate_limits import charge_batch_requests
from app.callbacks import UnresolvableCallbackHost, UnsafeCallbackTarget, check_target
from app.outage import outage
from app.queues import Queues
from app.redis_retry import UNAVAILABLE, RedisRetry
from app.schemas.batches import (
    BatchJob,
    BatchMessagesQuery,
    BatchPath,
    BatchRequestsQuery,
    CreateBatch,
    LettaBatchRequest,
    LettaRequest,
)
from app.schemas.common import Error, PageQuery
from app.schemas.messages import BatchMessages
from app.schemas.responses import URI_TOO_LONG, BatchItems, BatchJobs
from app.services import services
from app.store.batches import IdempotencyKeyReused, batch_job
from app.tasks import FINALIZE_BATCH, START_BATCH
from app.tenancy import owner_of
from app.vocabulary import BatchStatus

logger = logging.getLogger(__name__)

#: How long the answer to a create waits for Redis to read back the batch it has just stored.
CREATED_READ_WAIT_S = 10.0
#: Items read per round trip while looking for the requests in one status.
STATUS_SCAN_PAGE = 500

batches = APIBlueprint("batches", __name__, url_prefix="/v1/messages/batches",
                       abp_tags=[Tag(name="batches")],
                       abp_responses={"401": Error, "414": URI_TOO_LONG, "422": Error, "429": Error, "503": Error},
                       abp_security=SECURITY)


@batches.post("", responses={200: BatchJob, 404: Error, 409: Error, 413: Error, 415: Error}, strict_slashes=False)
def create_batch(body: CreateBatch) -> Any:
    """Submit a batch of agent requests; it runs in the background.

    Answered as soon as the batch is stored and its start is enqueued, whatever its size.
    An `Idempotency-Key` header (at most 255 characters, kept 24 hours by default) makes a
    retried submission answer with the first batch; the same key with another body is a 409.
    """
    svc = services()
    check_requests(body.requests, max_steps_ceiling=svc.settings.max_steps_ceiling)
    if body.callback_url is not None:
        try:
            check_target(body.callback_url, allow_private=svc.settings.callback_allow_private)
        except UnresolvableCallbackHost:
            pass  # accepted, as on Letta: delivery checks the name again and retries until it resolves
        except UnsafeCallbackTarget as exc:
            raise ApiError(422, f"Invalid request: {exc}.", errors=[{"loc": ["callback_url"], "msg": str(exc)}]) \
                from None
    key = idempotency_key()
    try:
        batch_id, created = svc.store.batches.create(
            requests=body.requests, callback_url=body.callback_url, metadata=body.metadata,
            completion_window_s=svc.settings.completion_window_s, tenant=current_tenant(),
            idempotency_key=key, fingerprint=body_fingerprint(body) if key is not None else "",
            idempotency_ttl_s=svc.settings.idempotency_ttl_s,
            admit=lambda: charge_batch_requests(len(body.requests)), blob_size=svc.settings.chunk_size)
    except IdempotencyKeyReused as exc:
        raise ApiError(409, f"Idempotency-Key {key!r} was already used with a different request body (batch "
                            f"{exc.batch_id!r}); send the same body to get that batch, or a new key for a new "
                            "batch.") from None
    if created:
        logger.info("Batch %s created with %d requests", batch_id, len(body.requests))
    _ensure_started(batch_id, resend=not created)
    # Stored: a client told 503 now would retry and make a second batch, so wait Redis out a little.
    batch = RedisRetry(give_up=lambda: False, max_wait_s=CREATED_READ_WAIT_S).call_blocking(
        svc.store.batches.get, batch_id)
    if batch is None:
        raise not_found("Batch", batch_id)  # created under this key, then deleted
    return jsonify(batch)


def _ensure_started(batch_id: str, *, resend: bool) -> None:
    """Enqueue the batch's fan-out. The batch is stored, so it is accepted whatever happens here:
    should the message not be sent (or be lost), the reconciler's next sweep starts it. On an
    idempotent retry, the start is sent again if no message carries it (the first request may
    have died before it could send it)."""
    svc = services()
    progress = svc.store.progress.progress([batch_id])[0]
    if progress is None or progress.fanout_next > 0 or progress.terminal:
        return
    start = progress.start_message_id
    if resend and start and Queues(tasks=svc.tasks).alive(START_BATCH, [start])[0]:
        return
    try:
        svc.tasks.send(START_BATCH, batch_id)
    except UNAVAILABLE as exc:
        outage.lost(exc)


@batches.get("", responses={200: BatchJobs, 400: Error}, strict_slashes=False)
def list_batches(query: PageQuery) -> Any:
    """All batches, any status, newest first by default (a bare JSON array)."""
    found = services().store.batches.list(tenant=current_tenant(), after=query.after, before=query.before,
                                          limit=query.limit, order=query.order)
    return jsonify(found)


@batches.get("/<batch_id>", responses={200: BatchJob, 404: Error})
def retrieve_batch(path: BatchPath) -> Any:
    read = read_reply()
    if read is NOT_READ or isinstance(read, Exception):
        return jsonify(batch_or_404(path.batch_id))
    return jsonify(_owned_or_404(batch_job(read) if read else None, path.batch_id))


@read_with_lookup("batches.retrieve_batch")
def _read_batch(pipe: redis.client.Pipeline, view_args: dict[str, Any]) -> None:
    """A poll's whole read goes with the key lookup: one round trip per GET."""
    services().store.batches.queue_get(pipe, str(view_args.get("batch_id", "")))


@batches.patch("/<batch_id>/cancel", responses={200: None, 404: Error, 409: Error})
def cancel_batch(path: BatchPath) -> Any:
    """Cancel a batch: unstarted requests are skipped, running ones closed mid-stream.

    Answers `null`, also when the batch was already cancelled; 409 when it already ended otherwise.
    """
    svc = services()
    batch_or_404(path.batch_id)
    stopped = svc.store.batches.stop(path.batch_id, status=BatchStatus.CANCELLED)
    if stopped.result == "missing":
        raise not_found("Batch", path.batch_id)
    if stopped.result == "stopped":
        logger.info("Batch %s cancelled with %d requests still running", path.batch_id, stopped.running)
    if stopped.needs_finalize:
        svc.tasks.send(FINALIZE_BATCH, path.batch_id)
    if stopped.result == "conflict":
        raise ApiError(409, f"Batch {path.batch_id!r} is already {stopped.status}; it cannot be cancelled.")
    if stopped.result == "settled":
        raise ApiError(409, f"Batch {path.batch_id!r} has already finished all its requests; it cannot be "
                            "cancelled.")
    return Response("null", status=200, mimetype="application/json")


@batches.get("/<batch_id>/messages", responses={200: BatchMessages, 400: Error, 404: Error})
def list_batch_messages(path: BatchPath, query: BatchMessagesQuery) -> Any:
    """Messages of the batch's requests (inputs and everything their runs produced)."""
    batch_or_404(path.batch_id)
    found = services().store.messages.page_for_batch(
        path.batch_id, agent_id=query.agent_id, after=query.after, before=query.before, limit=query.limit,
        order=query.order)
    return jsonify({"messages": found})


@batches.get("/<batch_id>/requests", responses={200: BatchItems, 400: Error, 404: Error})
def list_batch_requests(path: BatchPath, query: BatchRequestsQuery) -> Any:
    """Each request of the batch: status, stop_reason, ttft_ns, total_duration_ns, error (a bare
    JSON array, in submission order by default)."""
    batch_or_404(path.batch_id)
    if query.status is None:
        return jsonify(services().store.batches.items_page(
            path.batch_id, after=query.after, before=query.before, limit=query.limit, order=query.order))
    return jsonify(_items_in_status(path.batch_id, query))


def _items_in_status(batch_id: str, query: BatchRequestsQuery) -> list[dict[str, Any]]:
    """A page of the requests in one status: pages of the item list are read until it is full
    or the list ends (at most the batch's size, MAX_REQUESTS_PER_BATCH)."""
    store = services().store
    found: list[dict[str, Any]] = []
    after, before = query.after, query.before
    backward = before is not None and after is None
    while len(found) < query.limit:
        items = store.batches.items_page(batch_id, after=after, before=before, limit=STATUS_SCAN_PAGE,
                                         order=query.order)
        matches = [item for item in items if item["status"] == query.status]
        # Walking back from `before`, each further page comes earlier in the answer.
        found = matches + found if backward else found + matches
        if len(items) < STATUS_SCAN_PAGE:
            break
        if backward:
            before = items[0]["id"]
        else:
            after = items[-1]["id"]
    return found[-query.limit:] if backward else found[:query.limit]


def check_requests(requests: list[LettaBatchRequest], *, max_steps_ceiling: int) -> None:
    """The checks the schema cannot make, in one pass over the requests: the max_steps ceiling,
    then each distinct agent exists and belongs to the caller's tenant (first offending index named)."""
    first_index: dict[str, int] = {}
    for index, item in enumerate(requests):
        if item.max_steps is not None and item.max_steps > max_steps_ceiling:
            check_max_steps(item, max_steps_ceiling, loc=["requests", index, "max_steps"])
        first_index.setdefault(item.agent_id, index)
    tenant = current_tenant()
    agents = services().store.agents.get_many(list(first_index))
    for agent_id, index in first_index.items():
        agent = agents.get(agent_id)
        if agent is None or owner_of(agent["created_by_id"]) != tenant:
            raise ApiError(404, f"Agent {agent_id!r} (requests[{index}].agent_id) not found.")


def check_max_steps(request: LettaRequest, ceiling: int, *, loc: list[str | int]) -> None:
    """The ceiling is a setting, so it is checked here rather than in the schema."""
    if request.max_steps is not None and request.max_steps > ceiling:
        raise invalid_field(loc, f"must be at most {ceiling} (BATCHLINE_MAX_STEPS_CEILING)")


def batch_or_404(batch_id: str) -> dict[str, Any]:
    """The caller's batch; another tenant's answers 404 exactly like one that does not exist."""
    return _owned_or_404(services().store.batches.get(batch_id), batch_id)


def _owned_or_404(batch: dict[str, Any] | None, batch_id: str) -> dict[str, Any]:
    if batch is None or owner_of(batch["created_by_id"]) != current_tenant():
        raise not_found("Batch", batch_id)
    return batch
