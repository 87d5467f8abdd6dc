"""Authentication: every `/v1` call presents `Authorization: Bearer <key>` (what letta-client
sends for `api_key=`), and the key decides the caller's tenant. The health probes and the API
documents are open; `/metrics` and the monitor are open only with `BATCHLINE_MONITOR_PUBLIC`.

Installed as a `before_request` hook, so a route cannot forget it."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from flask import Flask, Response, g, request

from app.api.errors import error_response
from app.services import services
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
    key = svc.store.api_keys.authenticate(token.strip())
    if key is None:
        return _unauthorized("Invalid API key: it is unknown or was revoked.", error="invalid_token")
    g.principal = Principal(tenant=key.tenant, key_id=key.id)
    return None


def _unauthorized(detail: str, *, error: str | None = None) -> Response:
    response = error_response(401, detail)
    challenge: dict[str, Any] = {"realm": "batchline"}
    if error is not None:
        challenge["error"] = error
    response.headers["WWW-Authenticate"] = "Bearer " + ", ".join(f'{k}="{v}"' for k, v in challenge.items())
    return response
