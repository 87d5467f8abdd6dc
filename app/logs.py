"""Logging that reads as one clear line per event that matters.

`BATCHLINE_LOG_FORMAT=json` turns every process's lines (web, worker, the worker supervisor, the
embedded Redis supervisor) into JSON objects, one per line, for a log collector; the lines logged
while a batch or an item is handled carry its `batch_id` and `item_id` (context variables set by
the web around batch routes and by the worker around each item). Without it, lines stay text."""

from __future__ import annotations

import json
import logging
import os
from contextlib import suppress
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

#: Libraries that log every request at INFO: one line per model call or callback would bury
#: the lines that matter under a large batch.
CHATTY_LOGGERS = ("httpx", "httpcore")
#: The environment variable that chooses the log format: "text" (default) or "json".
LOG_FORMAT_ENV = "BATCHLINE_LOG_FORMAT"
#: The text format of the web process and the embedded Redis supervisor (the default, readable).
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

#: How batch ids begin (app.ids.new_id("job")).
BATCH_ID_PREFIX = "job-"

batch_id_var: ContextVar[str | None] = ContextVar("batch_id", default=None)
item_id_var: ContextVar[str | None] = ContextVar("item_id", default=None)


def json_logs() -> bool:
    return os.environ.get(LOG_FORMAT_ENV, "").strip().lower() == "json"


class JsonFormatter(logging.Formatter):
    """One JSON object per record; an exception's traceback goes in `exc_info`, inside the line."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds").replace(
                "+00:00", "Z"),
            "level": record.levelname, "logger": record.name, "pid": record.process, "thread": record.threadName,
            "message": record.getMessage(),
        }
        for name, var in (("batch_id", batch_id_var), ("item_id", item_id_var)):
            value = getattr(record, name, None) or var.get()
            if value is not None:
                line[name] = value
        if record.exc_info:
            line["exc_info"] = self.formatException(record.exc_info)
        if record.stack_info:
            line["stack_info"] = self.formatStack(record.stack_info)
        return json.dumps(line, default=str)


def use_chosen_format(*loggers: logging.Logger) -> None:
    """With JSON logs chosen, give the handlers of these loggers (the root by default) the JSON
    formatter; otherwise leave them as configured."""
    if not json_logs():
        return
    for target in loggers or (logging.getLogger(),):
        for handler in target.handlers:
            handler.setFormatter(JsonFormatter())


def configure_process_logging(text_format: str = TEXT_FORMAT) -> None:
    """Logging of a Batchline process that no framework configures (the supervisors)."""
    logging.basicConfig(level=logging.INFO, format=text_format)
    use_chosen_format()


def quiet_chatty_loggers() -> None:
    for name in CHATTY_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)


def configure_web_logging() -> None:
    configure_process_logging()
    quiet_chatty_loggers()


def bind_item(batch_id: str | None, item_id: str | None = None) -> None:
    """The lines logged from here on in this context (an asyncio task's own) carry these ids."""
    batch_id_var.set(batch_id)
    item_id_var.set(item_id)


def install_web_context(app: Any) -> None:
    """Requests on a route with a batch id log with it (reset after each request: gunicorn's
    threads serve one request after another in the same context)."""
    from flask import g, request

    @app.before_request
    def _bind_batch() -> None:
        batch_id = (request.view_args or {}).get("batch_id")
        if batch_id:
            g.batchline_log_token = batch_id_var.set(str(batch_id))

    @app.teardown_request
    def _unbind_batch(_: BaseException | None) -> None:
        token = g.pop("batchline_log_token", None)
        if token is not None:
            with suppress(ValueError):  # set in another context (never expected): nothing to undo
                batch_id_var.reset(token)
