"""Every error answers `{"detail": "<sentence>"}` with the right status; never a 500 for what
a client can send, since the SDK retries 5xx on POST and would duplicate batches."""

from __future__ import annotations

import logging
from typing import Any

import redis
from flask import Flask, Response, current_app, jsonify
from gunicorn.http.errors import ParseException
from pydantic import ValidationError
from werkzeug.exceptions import HTTPException

from app.outage import outage
from app.redis_retry import as_unavailable
from app.schemas.messages import UNION_TAGS, UNION_TAGS_AFTER_FIELD
from app.store.pagination import UnknownCursor

logger = logging.getLogger(__name__)

#: Seconds a client is asked to wait while Redis is unavailable.
REDIS_RETRY_AFTER_S = 2
#: Statuses a Stainless SDK would retry but where retrying cannot help.
_NO_RETRY_STATUSES = frozenset({409})


class ApiError(Exception):
    """An error answer; `errors` lists the fields of a 422 (`[{"loc": [...], "msg": ...}]`)."""

    def __init__(self, status: int, detail: str, *, errors: list[dict[str, Any]] | None = None) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.errors = errors


def invalid_field(loc: list[str | int], msg: str) -> ApiError:
    """A 422 shaped like pydantic's, for a check made outside the schema."""
    path = ".".join(str(part) for part in loc)
    return ApiError(422, f"Invalid request: {path}: {msg}.", errors=[{"loc": loc, "msg": msg}])


def not_found(kind: str, object_id: str) -> ApiError:
    return ApiError(404, f"{kind} {object_id!r} not found.")


def error_response(status: int, detail: str, **extra: Any) -> Response:
    response = jsonify({"detail": detail, **extra})
    response.status_code = status
    if status in _NO_RETRY_STATUSES:
        response.headers["x-should-retry"] = "false"
    return response


def validation_error_response(error: ValidationError) -> Response:
    """422 naming each invalid field and why, never echoing the input back. (A body that is no
    JSON object never gets here: app.api.body_guard answers it first.)"""
    details = error.errors(include_url=False, include_input=False, include_context=False)
    return invalid_request(details, total=len(details))


#: Invalid fields listed in a 422's `errors` (its sentence names the first 10).
MAX_LISTED_ERRORS = 100


def invalid_request(details: list[Any], *, total: int) -> Response:
    """The 422 of `validation_error_response` from pydantic's error details (the first
    MAX_LISTED_ERRORS of `total`, without input or context)."""
    errors = [{"loc": _without_union_tags(detail["loc"]), "msg": _message(detail)}
              for detail in details[:MAX_LISTED_ERRORS]]
    sentence = "; ".join(
        f"{'.'.join(str(part) for part in item['loc']) or 'body'}: {item['msg']}" for item in errors[:10])
    if total > 10:
        sentence += f"; and {total - 10} more"
    return error_response(422, f"Invalid request: {sentence}.", errors=errors)


def _message(detail: Any) -> str:
    if detail["type"] == "extra_forbidden":  # only query models forbid extras; bodies ignore them
        return "unknown query parameter for this route (see /docs/openapi.json); it is refused, not ignored"
    return detail["msg"]


def _without_union_tags(loc: tuple[str | int, ...]) -> list[str | int]:
    return [part for index, part in enumerate(loc) if not (index > 0 and _is_union_tag(part, loc[index - 1]))]


def _is_union_tag(part: str | int, before: str | int) -> bool:
    if isinstance(before, int):
        return part in UNION_TAGS
    return part in UNION_TAGS_AFTER_FIELD.get(before, ())


def register(app: Flask) -> None:
    @app.errorhandler(ApiError)
    def _api_error(error: ApiError) -> Response:
        if error.errors is not None:
            return error_response(error.status, error.detail, errors=error.errors)
        return error_response(error.status, error.detail)

    @app.errorhandler(UnknownCursor)
    def _bad_cursor(error: UnknownCursor) -> Response:
        return error_response(400, str(error))

    @app.errorhandler(redis.ConnectionError)
    @app.errorhandler(redis.TimeoutError)
    @app.errorhandler(redis.ReadOnlyError)  # a failover in progress: the replica does not take writes yet
    @app.errorhandler(redis.exceptions.OutOfMemoryError)  # maxmemory reached: no writes until there is room
    def _redis_down(error: redis.RedisError) -> Response:
        outage.lost(error)
        return redis_unavailable()

    @app.after_request
    def _redis_back(response: Response) -> Response:
        if outage.down and response.status_code < 500:
            outage.back()
        return response

    @app.errorhandler(HTTPException)
    def _http_error(error: HTTPException) -> Response:
        if error.code == 413:
            limit = current_app.config["MAX_CONTENT_LENGTH"]
            return error_response(413, f"Request body too large: the limit is {limit} bytes{_binary_size(limit)}.")
        if error.response is not None and error.response.status_code == 422:
            return error.response  # flask-openapi3's validation abort, already shaped
        return error_response(error.code or 500, error.description or error.name)

    @app.errorhandler(ParseException)  # raised by gunicorn while the app reads a chunked body
    def _bad_framing(_error: ParseException) -> Response:
        return error_response(400, "The request body's chunked transfer encoding is malformed; send it again.")

    @app.errorhandler(Exception)
    def _unexpected(error: Exception) -> Response:
        if as_unavailable(error) is not error:  # a script's write refused (Redis 6's wording)
            return _redis_down(error)
        logger.exception("Unhandled error")
        return error_response(500, "Internal error; it has been logged.")


def redis_unavailable() -> Response:
    """503 with Retry-After, which the SDKs honour."""
    response = error_response(503, "Storage (Redis) is unavailable; try again shortly.")
    response.headers["Retry-After"] = str(REDIS_RETRY_AFTER_S)
    return response


def _binary_size(size_bytes: int) -> str:
    """` (256 MiB)`, or nothing under 1 KiB."""
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if size_bytes >= scale:
            return f" ({size_bytes / scale:.4g} {unit})"
    return ""
