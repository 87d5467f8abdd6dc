"""The Letta Batches API: create, list, retrieve, cancel, a batch's messages, and Batchline's
per-request view."""

from __future__ import annotations

import logging
from typing import Any

import redis
from flask import Response, jsonify
from flask_openapi3 import APIBlueprint, Tag

from app.api import batch_create
from app.api.auth import NOT_READ, SECURITY, current_tenant, read_reply, read_with_lookup
from app.api.errors import ApiError, not_found
from app.schemas.batches import BatchJob, BatchMessagesQuery, BatchPath, BatchRequestsQuery
from app.schemas.common import Error, PageQuery
from app.schemas.messages import BatchMessages
from app.schemas.responses import URI_TOO_LONG, BatchItems, BatchJobs
from app.services import services
from app.store.batches import batch_job
from app.tasks import FINALIZE_BATCH
from app.tenancy import owner_of
from app.vocabulary import BatchStatus

logger = logging.getLogger(__name__)

#: Items read per round trip while looking for the requests in one status.
STATUS_SCAN_PAGE = 500

batches = APIBlueprint("batches", __name__, url_prefix="/v1/messages/batches",
                       abp_tags=[Tag(name="batches")],
                       abp_responses={"401": Error, "414": URI_TOO_LONG, "422": Error, "429": Error, "503": Error},
                       abp_security=SECURITY)
_create_body, _create_schemas = batch_create.openapi_body()
batches.components_schemas.update(_create_schemas)


@batches.post("", responses={200: BatchJob, 404: Error, 408: Error, 409: Error, 413: Error, 415: Error},
              strict_slashes=False, openapi_extensions=_create_body)
def create_batch() -> Any:
    """Submit a batch of agent requests; it runs in the background.

    Answered as soon as the batch is stored and its start is enqueued, whatever its size.
    An `Idempotency-Key` header (at most 255 characters, kept 24 hours by default) makes a
    retried submission answer with the first batch; the same key with another body is a 409.
    """
    return batch_create.create_batch()  # reads the body (documented as CreateBatch) from the stream


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


def batch_or_404(batch_id: str) -> dict[str, Any]:
    """The caller's batch; another tenant's answers 404 exactly like one that does not exist."""
    return _owned_or_404(services().store.batches.get(batch_id), batch_id)


def _owned_or_404(batch: dict[str, Any] | None, batch_id: str) -> dict[str, Any]:
    if batch is None or owner_of(batch["created_by_id"]) != current_tenant():
        raise not_found("Batch", batch_id)
    return batch
