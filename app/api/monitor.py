"""Monitoring: a snapshot of the fleet (queues, workers, models, the reconciler) with the caller's
batches, the caller's dead letters and what to do with them, and Prometheus metrics.

A tenant sees and acts on the dead letters of its own batches only; a letter that names no
stored batch belongs to the default tenant (the installation's operator)."""

from __future__ import annotations

import logging
from typing import Any

from flask import Response, jsonify
from flask_openapi3 import APIBlueprint, Tag
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from app.api.auth import SECURITY, current_principal, current_tenant
from app.api.errors import ApiError
from app.ids import iso_from_ns
from app.monitoring import FleetCollector, snapshot
from app.queues import DEAD_LETTERS_MAX, Queues
from app.schemas.common import Error
from app.schemas.monitor import (
    DeadLetterPath,
    DeadLetters,
    DeadLettersQuery,
    Discarded,
    Monitor,
    QueueFilter,
    Requeued,
)
from app.schemas.responses import URI_TOO_LONG, text_body
from app.services import services
from app.tenancy import DEFAULT_TENANT

logger = logging.getLogger(__name__)

monitor = APIBlueprint("monitor", __name__, url_prefix="/v1/monitor", abp_tags=[Tag(name="monitor")],
                       abp_responses={"401": Error, "414": URI_TOO_LONG, "422": Error, "429": Error, "503": Error},
                       abp_security=SECURITY)
metrics = APIBlueprint("metrics", __name__, abp_tags=[Tag(name="monitor")],
                       abp_responses={"401": Error, "429": Error, "503": Error}, abp_security=SECURITY)


def _queues() -> Queues:
    return Queues(tasks=services().tasks)


@monitor.get("", responses={200: Monitor}, strict_slashes=False)
def get_monitor() -> Any:
    """The fleet now: queue depths and latency, live workers, model streams and pace, the
    reconciler's last sweep, and the caller's running and recent batches with their ETA (none
    for a caller without a key on a public monitor)."""
    return jsonify(snapshot(services().store, _queues(), tenant=current_principal().tenant))


@monitor.get("/dead-letters", responses={200: DeadLetters})
def list_dead_letters(query: DeadLettersQuery) -> Any:
    """Dead letters of the caller's batches: messages that failed every retry, most recent
    failure first."""
    letters = _own_letters(query.queue)[:query.limit]
    for letter in letters:
        letter["failed_at"] = iso_from_ns(int(letter.pop("failed_ms") * 1_000_000))
    return jsonify({"dead_letters": letters})


@monitor.post("/dead-letters/requeue", responses={200: Requeued})
def requeue_all(query: QueueFilter) -> Any:
    """Send every dead letter of the caller's batches (of one queue, or of all) again as a new message."""
    queues = _queues()
    requeued = [one for letter in _own_letters(query.queue) for one in queues.requeue(letter["id"],
                                                                                      queue=letter["queue"])]
    logger.info("Requeued %d dead letters%s", len(requeued), f" of queue {query.queue}" if query.queue else "")
    return jsonify({"requeued": requeued})


@monitor.delete("/dead-letters", responses={200: Discarded})
def discard_all(query: QueueFilter) -> Any:
    """Delete every dead letter of the caller's batches (of one queue, or of all)."""
    queues = _queues()
    discarded = [one for letter in _own_letters(query.queue) for one in queues.discard(letter["id"],
                                                                                       queue=letter["queue"])]
    logger.info("Discarded %d dead letters%s", len(discarded), f" of queue {query.queue}" if query.queue else "")
    return jsonify({"discarded": discarded})


@monitor.post("/dead-letters/<message_id>/requeue", responses={200: Requeued, 404: Error})
def requeue_one(path: DeadLetterPath) -> Any:
    """Send one dead letter again as a new message."""
    letter = _own_letter_or_404(path.message_id)
    requeued = _queues().requeue(path.message_id, queue=letter["queue"])
    if not requeued:
        raise _no_dead_letter(path.message_id)
    logger.info("Requeued dead letter %s", path.message_id)
    return jsonify({"requeued": requeued})


@monitor.delete("/dead-letters/<message_id>", responses={200: Discarded, 404: Error})
def discard_one(path: DeadLetterPath) -> Any:
    """Delete one dead letter."""
    letter = _own_letter_or_404(path.message_id)
    discarded = _queues().discard(path.message_id, queue=letter["queue"])
    if not discarded:
        raise _no_dead_letter(path.message_id)
    logger.info("Discarded dead letter %s", path.message_id)
    return jsonify({"discarded": discarded})


def _own_letters(queue: str | None) -> list[dict[str, Any]]:
    """The caller's dead letters, most recent first, among the DEAD_LETTERS_MAX most recent."""
    letters = _queues().dead_letters(queue=queue, limit=DEAD_LETTERS_MAX)
    owners = services().store.monitor.batch_owners([letter["batch_id"] for letter in letters if letter["batch_id"]])
    tenant = current_tenant()
    return [letter for letter in letters if (owners.get(letter["batch_id"]) or DEFAULT_TENANT) == tenant]


def _own_letter_or_404(message_id: str) -> dict[str, Any]:
    """The caller's dead letter; another tenant's answers 404 exactly like one that does not exist."""
    letter = _queues().dead_letter(message_id)
    if letter is None:
        raise _no_dead_letter(message_id)
    owner = services().store.monitor.batch_owners([letter["batch_id"]])[letter["batch_id"]] \
        if letter["batch_id"] else None
    if (owner or DEFAULT_TENANT) != current_tenant():
        raise _no_dead_letter(message_id)
    return letter


def _no_dead_letter(message_id: str) -> ApiError:
    return ApiError(404, f"No dead letter {message_id!r} (it may have been requeued or discarded already).")


@metrics.get("/metrics", responses={200: text_body("text/plain", "Prometheus text exposition format.")})
def get_metrics() -> Response:
    """Prometheus metrics of the whole fleet, in the text exposition format."""
    svc = services()
    registry = CollectorRegistry(auto_describe=False)
    registry.register(FleetCollector(store=svc.store, queues=_queues()))
    return Response(generate_latest(registry), mimetype=CONTENT_TYPE_LATEST)
