"""The results export of a batch: JSON Lines streamed in submission order."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from typing import Any

import redis
from flask import Response, stream_with_context
from flask_openapi3 import APIBlueprint, Tag

from app.api.auth import SECURITY
from app.api.batches import batch_or_404
from app.schemas.batches import BatchPath
from app.schemas.common import Error
from app.schemas.responses import URI_TOO_LONG, text_body
from app.services import services

logger = logging.getLogger(__name__)

NDJSON = "application/x-ndjson"

results = APIBlueprint("results", __name__, url_prefix="/v1/messages/batches",
                       abp_tags=[Tag(name="batches")],
                       abp_responses={"401": Error, "414": URI_TOO_LONG, "422": Error, "429": Error, "503": Error},
                       abp_security=SECURITY)


@results.get("/<batch_id>/results", responses={200: text_body(NDJSON, "One JSON object a line."), 404: Error})
def export_results(path: BatchPath) -> Any:
    """Every request of the batch as one JSON line (`application/x-ndjson`), in submission order:
    index, batch_item_id, agent_id, status, stop_reason, ttft_ns, total_duration_ns, error,
    output_text (the final assistant text) and messages (its input and what its run produced).

    Streamed page by page: the answer starts at once and memory does not grow with the batch."""
    store = services().store
    batch_or_404(path.batch_id)

    def lines() -> Iterator[str]:
        try:
            for result in store.results.stream(path.batch_id):
                yield json.dumps(result) + "\n"
        except redis.RedisError as exc:
            # The status line is sent: the client sees the stream end early, and the log says why.
            logger.warning("Results export of batch %s stopped early: Redis failed (%s)", path.batch_id,
                           type(exc).__name__)

    return Response(stream_with_context(lines()), mimetype=NDJSON)
