"""Authentication: every `/v1` call presents `Authorization: Bearer <key>` (what letta-client
sends for `api_key=`), and the key decides the caller's tenant. The health probes and the API
documents are open; `/metrics` and the monitor are open only with `BATCHLINE_MONITOR_PUBLIC`.

Installed as a `before_request` hook, so a route cannot forget it."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import redis
from flask import Flask, Response, g, request

from app.api import rate_limits
from app.api.errors import error_response
from app.services import services
from app.store.api_keys import Rider
from app.tenancy import DEFAULT_TENANT

logger = logging.getLogger(__name__)

#: Paths under these prefixes need a key.
PROTECTED_PREFIXES = ("/v1/", "/metrics")
#: What `BATCHLINE_MONITOR_PUBLIC=true` opens to callers without a key (read-only).
PUBLIC_MONITOR_PATHS = frozenset({"/metrics", "/v1/monitor"})
#: For blueprints: how their operations are declared in the OpenAPI document.
SECURITY = [{"bearer": []}]
SECURITY_SCHEMES = {"bearer": {"type": "http", "scheme": "bearer",
                               "description": "An API key (`bl_...`): `batchline keys create`."}}


#: Queues a route's first Redis read on a pipeline, from the request's view args.
RouteRead = Callable[[redis.client.Pipeline, dict[str, Any]], None]
_READS_WITH_LOOKUP: dict[str, RouteRead] = {}
#: What `read_reply` answers when the route's read was not made with the key lookup.
NOT_READ = object()


@dataclass(frozen=True)
class Principal:
    """Who is calling. `key_id` is None when authentication is off; `tenant` is None only for an
    anonymous read of a public monitor."""

    tenant: str | None
    key_id: str | None


def current_principal() -> Principal:
    return g.principal


def current_tenant() -> str:
    """The caller's tenant (routes that serve anonymous callers must not use this)."""
    tenant = g.principal.tenant
    if tenant is None:
        raise RuntimeError("an anonymous caller reached a route that needs a tenant")
    return tenant


def install(app: Flask) -> None:
    settings = app.extensions["batchline"].settings
    if settings.auth == "off":
        logger.warning("Authentication is OFF (BATCHLINE_AUTH=off): anyone who reaches this port can read, run "
                       "and cancel every batch. Use it only on a machine you alone can reach.")
    app.before_request(_authenticate)


def _protected(path: str) -> bool:
    return path == "/v1" or path.startswith(PROTECTED_PREFIXES)


def _authenticate() -> Response | None:
    path = request.path
    if not _protected(path):
        return None
    svc = services()
    if svc.settings.auth == "off":
        g.principal = Principal(tenant=DEFAULT_TENANT, key_id=None)
        return None
    header = request.headers.get("Authorization")
    if header is None:
        if svc.settings.monitor_public and path.rstrip("/") in PUBLIC_MONITOR_PATHS and request.method == "GET":
            g.principal = Principal(tenant=None, key_id=None)
            return None
        return _unauthorized("Missing API key: send the header 'Authorization: Bearer <key>' (the key made at first "
                             "start is in var/api-key; `batchline keys create` makes more).")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return _unauthorized("Malformed Authorization header: expected 'Bearer <key>'.", error="invalid_request")
    # The call is counted against the rate limit, and the route's read made, in the lookup's round trip
    # when they can be.
    count = rate_limits.call_rider()
    read = _READS_WITH_LOOKUP.get(request.endpoint or "")
    riders = [rider for rider in (count, read and _route_read(read)) if rider is not None]
    key, replies = svc.store.api_keys.authenticate_with(token.strip(), riders)
    if replies:
        if count is not None:
            rate_limits.counted_with_lookup(replies[0])
        if read is not None:
            g.batchline_read_with_lookup = replies[-1]
    if key is None:
        return _unauthorized("Invalid API key: it is unknown or was revoked.", error="invalid_token")
    g.principal = Principal(tenant=key.tenant, key_id=key.id)
    return None


def read_with_lookup(endpoint: str) -> Callable[[RouteRead], RouteRead]:
    """Declare the Redis read a route starts with (one command, queued on a pipeline from the
    route's view args), sent with the key lookup when it can be: see `read_reply`."""

    def register(read: RouteRead) -> RouteRead:
        _READS_WITH_LOOKUP[endpoint] = read
        return read

    return register


def read_reply() -> Any:
    """The reply of the route's read made with the key lookup (possibly an exception), or
    NOT_READ when it was not made (the route then reads itself)."""
    return g.pop("batchline_read_with_lookup", NOT_READ)


def _route_read(read: RouteRead) -> Rider:
    view_args = request.view_args or {}
    return lambda pipe, _key_id: read(pipe, view_args)


def _unauthorized(detail: str, *, error: str | None = None) -> Response:
    response = error_response(401, detail)
    challenge: dict[str, Any] = {"realm": "batchline"}
    if error is not None:
        challenge["error"] = error
    response.headers["WWW-Authenticate"] = "Bearer " + ", ".join(f'{k}="{v}"' for k, v in challenge.items())
    return response
