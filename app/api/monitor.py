"""Monitoring: a snapshot of the fleet (queues, workers, models, batches, the reconciler), the
dead letters and what to do with them, and Prometheus metrics."""

from __future__ import annotations

import logging
from typing import Any

from flask import Response, jsonify
from flask_openapi3 import APIBlueprint, Tag
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from app.api.auth import SECURITY
from app.api.errors import ApiError
from app.ids import iso_from_ns
from app.monitoring import FleetCollector, snapshot
from app.queues import Queues
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

logger = logging.getLogger(__name__)

monitor = APIBlueprint("monitor", __name__, url_prefix="/v1/monitor", abp_tags=[Tag(name="monitor")],
                       abp_responses={"401": Error, "414": URI_TOO_LONG, "422": Error, "503": Error},
                       abp_security=SECURITY)
metrics = APIBlueprint("metrics", __name__, abp_tags=[Tag(name="monitor")],
                       abp_responses={"401": Error, "503": Error}, abp_security=SECURITY)


def _queues() -> Queues:
    return Queues(tasks=services().tasks)


@monitor.get("", responses={200: Monitor}, strict_slashes=False)
def get_monitor() -> Any:
    """The fleet now: queue depths and latency, live workers, model streams and pace, running
    batches with their ETA, and the reconciler's last sweep."""
    return jsonify(snapshot(services().store, _queues()))


@monitor.get("/dead-letters", responses={200: DeadLetters})
def list_dead_letters(query: DeadLettersQuery) -> Any:
    """Messages that failed every retry, most recent failure first."""
    letters = _queues().dead_letters(queue=query.queue, limit=query.limit)
    for letter in letters:
        letter["failed_at"] = iso_from_ns(int(letter.pop("failed_ms") * 1_000_000))
    return jsonify({"dead_letters": letters})


@monitor.post("/dead-letters/requeue", responses={200: Requeued})
def requeue_all(query: QueueFilter) -> Any:
    """Send every dead letter (of one queue, or of all) again as a new message."""
    requeued = _queues().requeue(queue=query.queue)
    logger.info("Requeued %d dead letters%s", len(requeued), f" of queue {query.queue}" if query.queue else "")
    return jsonify({"requeued": requeued})


@monitor.delete("/dead-letters", responses={200: Discarded})
def discard_all(query: QueueFilter) -> Any:
    """Delete every dead letter (of one queue, or of all)."""
    discarded = _queues().discard(queue=query.queue)
    logger.info("Discarded %d dead letters%s", len(discarded), f" of queue {query.queue}" if query.queue else "")
    return jsonify({"discarded": discarded})


@monitor.post("/dead-letters/<message_id>/requeue", responses={200: Requeued, 404: Error})
def requeue_one(path: DeadLetterPath) -> Any:
    """Send one dead letter again as a new message."""
    requeued = _queues().requeue(path.message_id)
    if not requeued:
        raise _no_dead_letter(path.message_id)
    logger.info("Requeued dead letter %s", path.message_id)
    return jsonify({"requeued": requeued})


@monitor.delete("/dead-letters/<message_id>", responses={200: Discarded, 404: Error})
def discard_one(path: DeadLetterPath) -> Any:
    """Delete one dead letter."""
    discarded = _queues().discard(path.message_id)
    if not discarded:
        raise _no_dead_letter(path.message_id)
    logger.info("Discarded dead letter %s", path.message_id)
    return jsonify({"discarded": discarded})


def _no_dead_letter(message_id: str) -> ApiError:
    return ApiError(404, f"No dead letter {message_id!r} (it may have been requeued or discarded already).")


@metrics.get("/metrics", responses={200: text_body("text/plain", "Prometheus text exposition format.")})
def get_metrics() -> Response:
    """Prometheus metrics of the whole fleet, in the text exposition format."""
    svc = services()
    registry = CollectorRegistry(auto_describe=False)
    registry.register(FleetCollector(store=svc.store, queues=_queues()))
    return Response(generate_latest(registry), mimetype=CONTENT_TYPE_LATEST)
