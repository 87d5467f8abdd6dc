"""The operator's dashboard: one static page that draws the monitoring and batch APIs.

The page holds no data of its own; everything it shows comes from the same JSON routes an operator
could call by hand (`/v1/monitor`, `/v1/messages/batches`, the dead-letter routes)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from flask import send_from_directory
from flask_openapi3 import APIBlueprint
from pydantic import BaseModel

#: Where the page and its script live (shipped as package data).
STATIC_DIR = Path(__file__).resolve().parent.parent / "static" / "dashboard"
#: The page loads only from this server: no CDN, no inline script, no foreign connection.
CONTENT_SECURITY_POLICY = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
                           "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")

dashboard = APIBlueprint("dashboard", __name__)


class AssetPath(BaseModel):
    name: str


def _static(name: str) -> Any:
    response = send_from_directory(STATIC_DIR, name, max_age=0)
    response.headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response


@dashboard.get("/dashboard", doc_ui=False, strict_slashes=False)
def page() -> Any:
    return _static("index.html")


@dashboard.get("/dashboard/static/<path:name>", doc_ui=False)
def asset(path: AssetPath) -> Any:
    # send_from_directory refuses paths that leave STATIC_DIR (404), so a crafted name reads nothing else.
    return _static(path.name)
