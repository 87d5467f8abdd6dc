"""Logging that reads as one clear line per event that matters."""

from __future__ import annotations

import logging

#: Libraries that log every request at INFO: one line per model call or callback would bury
#: the lines that matter under a large batch.
CHATTY_LOGGERS = ("httpx", "httpcore")


def quiet_chatty_loggers() -> None:
    for name in CHATTY_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)


def configure_web_logging() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    quiet_chatty_loggers()
