"""POST /v1/messages/batches, read from the request stream: the `requests` array is validated and
written to Redis a blob at a time (app/store/staging.py StagedRequests), so a 100,000-request body
is never held whole, parsed whole, or turned into 100,000 models at once. Nothing becomes visible
before the whole body is read and valid: a bad request #99,999 is a 422 and nothing is stored.

Answers exactly as when the body was parsed whole: the same 4xx sentences (app/api/body_guard.py),
and each invalid field named with its request's index, never echoing the input back.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import Any

from flask import Response, abort, jsonify, request
from flask_openapi3.models import RequestBody
from flask_openapi3.utils import parse_body
from pydantic import TypeAdapter, ValidationError
from werkzeug.exceptions import ClientDisconnected

from app.api.auth import current_tenant
from app.api.body_guard import BodyRefused, check_media_type, parse_object, refused
from app.api.errors import MAX_LISTED_ERRORS, ApiError, invalid_field, invalid_request, not_found
from app.api.idempotency import HEADER, body_fingerprint, idempotency_key, requests_digest
from app.api.json_stream import JsonObjectStream
from app.api.rate_limits import charge_batch_requests, refund_batch_requests
from app.callbacks import UnresolvableCallbackHost, UnsafeCallbackTarget, check_target
from app.outage import outage
from app.queues import Queues
from app.redis_retry import UNAVAILABLE, RedisRetry
from app.schemas.batches import MAX_REQUESTS_PER_BATCH, CreateBatch, LettaBatchRequest, LettaRequest
from app.services import services
from app.store.batches import IdempotencyKeyReused, StagedRequestsLost
from app.store.staging import StagedRequests
from app.tasks import START_BATCH
from app.tenancy import owner_of

logger = logging.getLogger(__name__)

#: How long the answer to a create waits for Redis to read back the batch it has just stored.
CREATED_READ_WAIT_S = 10.0
#: Bytes read while looking for the body's first character.
_FIRST_READ_BYTES = 4096

_REQUESTS = TypeAdapter(list[LettaBatchRequest])
#: Stands for the (separately validated) requests when the other fields are validated.
_VALIDATED = [LettaBatchRequest.model_construct(agent_id="-", input="-")]


def openapi_body() -> tuple[dict[str, Any], dict[str, Any]]:
    """The create's requestBody (CreateBatch, as flask-openapi3 documents a `body` parameter), and
    the component schemas it refers to: the route reads the stream itself, so declares it."""
    content, schemas = parse_body(CreateBatch)
    body = RequestBody(content=content, required=True).model_dump(by_alias=True, exclude_none=True)
    return {"requestBody": body}, schemas


def create_batch() -> Response:
    try:
        return _create_batch()
    except ClientDisconnected:
        if request.content_length is None:  # chunked
            raise ApiError(400, "The request body ended before its last chunk; send the whole body.") from None
        raise ApiError(400, "The request body ended before the Content-Length it declared; send the whole "
                            "body.") from None


def _create_batch() -> Response:
    svc = services()
    first = _first_bytes()
    check_media_type()
    if not first.lstrip().startswith(b"{"):
        parse_object(first + request.stream.read())  # not an object: refused as the body guard does
        raise refused("the body is not an object; send a JSON object")
    reader = JsonObjectStream(_read_declared(already=len(first)), prefix=first)
    staged = svc.store.batches.stage(blob_size=svc.settings.chunk_size,
                                     digest=requests_digest() if request.headers.get(HEADER) else None)
    charged, created = 0, False

    def admit() -> None:
        nonlocal charged
        if not charged:  # once: a create that lost a race with the same key tries again
            charge_batch_requests(staged.count)
            charged = staged.count

    try:
        body = _read_batch(reader, staged, max_steps_ceiling=svc.settings.max_steps_ceiling)
        _check_agents(staged.first_index)
        if body.callback_url is not None:
            try:
                check_target(body.callback_url, allow_private=svc.settings.callback_allow_private)
            except UnresolvableCallbackHost:
                pass  # accepted, as on Letta: delivery checks the name again and retries until it resolves
            except UnsafeCallbackTarget as exc:
                raise ApiError(422, f"Invalid request: {exc}.",
                               errors=[{"loc": ["callback_url"], "msg": str(exc)}]) from None
        key = idempotency_key()
        batch_id, created = svc.store.batches.create(
            staged=staged, callback_url=body.callback_url, metadata=body.metadata,
            completion_window_s=svc.settings.completion_window_s, tenant=current_tenant(),
            idempotency_key=key, fingerprint=body_fingerprint(body, staged.digest) if key is not None else "",
            idempotency_ttl_s=svc.settings.idempotency_ttl_s, admit=admit)
    except IdempotencyKeyReused as exc:
        raise ApiError(409, f"Idempotency-Key {key!r} was already used with a different request body (batch "
                            f"{exc.batch_id!r}); send the same body to get that batch, or a new key for a new "
                            "batch.") from None
    except StagedRequestsLost:
        raise ApiError(408, "The request body took too long to arrive; send it again.") from None
    finally:
        staged.discard_unless_committed()
        if charged and not created:  # not stored (a concurrent create with the key stored first): not counted
            refund_batch_requests(charged)
    if created:
        logger.info("Batch %s created with %d requests", batch_id, staged.count)
    _ensure_started(batch_id, resend=not created)
    # Stored: a client told 503 now would retry and make a second batch, so wait Redis out a little.
    batch = RedisRetry(give_up=lambda: False, max_wait_s=CREATED_READ_WAIT_S).call_blocking(
        svc.store.batches.get, batch_id)
    if batch is None:
        raise not_found("Batch", batch_id)  # created under this key, then deleted
    return jsonify(batch)


def _first_bytes() -> bytes:
    """The body up to its first character that is not whitespace; 422 for a body without one."""
    pieces: list[bytes] = []  # joined once: megabytes of whitespace read a piece at a time
    while not pieces or not pieces[-1].strip():
        piece = request.stream.read(_FIRST_READ_BYTES)
        if not piece:
            raise refused("the request has no body; send a JSON object")
        pieces.append(piece)
    return b"".join(pieces)


def _read_declared(*, already: int) -> Callable[[int], bytes]:
    """The body stream's read, ending with ClientDisconnected when the body ends before its
    Content-Length: werkzeug's own stream raises it, gunicorn's ends the body there."""
    declared, read = request.content_length, request.stream.read
    if declared is None:
        return read
    total = already

    def read_declared(size: int) -> bytes:
        nonlocal total
        data = read(size)
        total += len(data)
        if not data and total < declared:
            raise ClientDisconnected()
        return data

    return read_declared


def _read_batch(reader: JsonObjectStream, staged: StagedRequests, *, max_steps_ceiling: int) -> CreateBatch:
    """Read the body, staging each group of valid requests; the batch's other fields, validated
    (with a stand-in for its requests). A 422 for any invalid field, all of them named as a
    validation of the whole body would; nothing staged is kept then."""
    fields: dict[str, Any] = {}
    details: list[dict[str, Any]] = []
    invalid, count, over_ceiling, streamed = 0, 0, None, False
    try:
        for key, value in reader.members(array_key="requests", group_size=staged.blob_size):
            if not isinstance(value, Iterator):
                fields[key] = value
                continue
            streamed = True
            for group in value:
                start, count = count, count + len(group)
                if count > MAX_REQUESTS_PER_BATCH:
                    continue  # refused whatever the requests hold; read on, to count them
                try:
                    requests = _REQUESTS.validate_python(group)
                except ValidationError as exc:
                    invalid += exc.error_count()
                    details += _located(exc, start, room=MAX_LISTED_ERRORS - len(details))
                    continue
                if invalid or over_ceiling is not None:
                    continue  # refused already: validated only to name every invalid field
                over_ceiling = _over_ceiling(requests, start, max_steps_ceiling)
                staged.add(requests)
    except BodyRefused as exc:
        raise refused(str(exc)) from None
    if streamed and count == 0:
        fields["requests"] = []  # its own validation says why not
    elif streamed:
        fields["requests"] = _VALIDATED
        if count > MAX_REQUESTS_PER_BATCH:
            details, invalid = [{"loc": ("requests",), "type": "too_long", "msg": (
                f"List should have at most {MAX_REQUESTS_PER_BATCH} items after validation, not {count}")}], 1
    try:
        body = CreateBatch.model_validate(fields)
    except ValidationError as exc:
        invalid += exc.error_count()
        details += _located(exc, 0, room=MAX_LISTED_ERRORS - len(details))
    if invalid:
        abort(invalid_request(details, total=invalid))
    if over_ceiling is not None:
        raise invalid_field(["requests", over_ceiling, "max_steps"], max_steps_message(max_steps_ceiling))
    staged.finish()
    return body


def _located(error: ValidationError, start: int, *, room: int) -> list[dict[str, Any]]:
    """Pydantic's error details, without input or context; a group's locations (which start with
    the index in the group) as `requests.<index in the batch>`."""
    details = error.errors(include_url=False, include_input=False, include_context=False)[:max(room, 0)]
    for detail in details:
        if detail["loc"] and isinstance(detail["loc"][0], int):
            detail["loc"] = ("requests", start + detail["loc"][0], *detail["loc"][1:])
    return details


def _over_ceiling(requests: list[LettaBatchRequest], start: int, ceiling: int) -> int | None:
    """The index of the first request above the max_steps ceiling, if any."""
    for index, item in enumerate(requests, start):
        if item.max_steps is not None and item.max_steps > ceiling:
            return index
    return None


def check_max_steps(request: LettaRequest, ceiling: int, *, loc: list[str | int]) -> None:
    """The ceiling is a setting, so it is checked here rather than in the schema."""
    if request.max_steps is not None and request.max_steps > ceiling:
        raise invalid_field(loc, max_steps_message(ceiling))


def max_steps_message(ceiling: int) -> str:
    return f"must be at most {ceiling} (BATCHLINE_MAX_STEPS_CEILING)"


def _check_agents(first_index: dict[str, int]) -> None:
    """Each distinct agent exists and belongs to the caller's tenant (its first request named)."""
    tenant = current_tenant()
    agents = services().store.agents.get_many(list(first_index))
    for agent_id, index in sorted(first_index.items(), key=lambda item: item[1]):
        agent = agents.get(agent_id)
        if agent is None or owner_of(agent["created_by_id"]) != tenant:
            raise ApiError(404, f"Agent {agent_id!r} (requests[{index}].agent_id) not found.")


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
