"""Where to start (the root), liveness and readiness probes."""

from __future__ import annotations

from typing import Any

import redis
from flask import jsonify, redirect
from flask_openapi3 import APIBlueprint, Tag

from app.api.errors import REDIS_RETRY_AFTER_S, error_response
from app.schemas.common import Error
from app.schemas.responses import ServiceIndex, Status
from app.services import services

health = APIBlueprint("health", __name__, abp_tags=[Tag(name="health")])


@health.get("/", responses={200: ServiceIndex})
def index() -> Any:
    """What this server is and where its documentation and probes are."""
    return jsonify({"name": "Batchline", "api": "/v1", "docs": "/docs/swagger", "openapi": "/docs/openapi.json",
                    "health": "/healthz", "ready": "/readyz", "dashboard": "/dashboard", "monitor": "/v1/monitor",
                    "metrics": "/metrics"})


@health.get("/docs/swagger/", doc_ui=False)
def swagger_with_slash() -> Any:
    # The Swagger page links its assets relative to its own URL, so it is served without the slash.
    return redirect("/docs/swagger", code=308)


@health.get("/healthz", responses={200: Status})
def healthz() -> Any:
    """The web process is up (says nothing of Redis)."""
    return jsonify({"status": "ok"})


@health.get("/readyz", responses={200: Status, 503: Error})
def readyz() -> Any:
    """Ready to serve: Redis answers. 503 otherwise."""
    try:
        services().store.ping()
    except redis.RedisError as exc:
        response = error_response(503, f"Redis is unavailable: {type(exc).__name__}.")
        response.headers["Retry-After"] = str(REDIS_RETRY_AFTER_S)
        return response
    return jsonify({"status": "ready"})
