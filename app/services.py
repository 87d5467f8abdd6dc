"""What a request handler needs, built once per app by `create_app` and injected through
`app.extensions` (tests build a fresh app with their own settings)."""

from __future__ import annotations

from dataclasses import dataclass

from flask import current_app

from app.settings import Settings
from app.store import Store
from app.tasks import TaskQueue


@dataclass
class Services:
    settings: Settings
    store: Store
    tasks: TaskQueue


def services() -> Services:
    return current_app.extensions["batchline"]
