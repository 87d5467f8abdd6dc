"""The CLI's only way to Batchline: its REST API, over httpx."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

from app.first_key import key_file, read_key_file

#: Where the CLI finds Batchline when BATCHLINE_URL is not set.
DEFAULT_URL = "http://127.0.0.1:8283"
#: Where the key file is looked for when BATCHLINE_VAR_DIR is not set (the service's default).
DEFAULT_VAR_DIR = "var"
#: How long one API call may take before the CLI gives up on it, in seconds.
REQUEST_TIMEOUT_S = 60.0


def _key_from_file() -> str | None:
    """The key a first start saved, when BATCHLINE_API_KEY is unset."""
    return read_key_file(key_file(Path(os.environ.get("BATCHLINE_VAR_DIR") or DEFAULT_VAR_DIR)))


class CliError(Exception):
    """A failure the CLI reports as one line, without a traceback."""


class Api:
    def __init__(self, *, base_url: str | None = None, api_key: str | None = None) -> None:
        self.base_url = (base_url or os.environ.get("BATCHLINE_URL") or DEFAULT_URL).rstrip("/")
        key = api_key if api_key is not None else os.environ.get("BATCHLINE_API_KEY") or _key_from_file()
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        self.http = httpx.Client(base_url=self.base_url, headers=headers, timeout=REQUEST_TIMEOUT_S)

    def call(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            answer = self.http.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            raise self._unreachable(exc) from None
        _raise_for(answer)
        return answer.json()

    def stream_lines(self, path: str) -> Iterator[str]:
        """The lines of a streamed (JSON Lines) answer, as they arrive."""
        try:
            with self.http.stream("GET", path, timeout=httpx.Timeout(REQUEST_TIMEOUT_S, read=None)) as answer:
                if answer.status_code >= 400:
                    answer.read()
                    _raise_for(answer)
                yield from (line for line in answer.iter_lines() if line)
        except httpx.TransportError as exc:
            raise self._unreachable(exc) from None

    def _unreachable(self, exc: httpx.TransportError) -> CliError:
        return CliError(f"Batchline is not reachable at {self.base_url} ({type(exc).__name__}); "
                        "is it running, and is BATCHLINE_URL right?")


def _raise_for(answer: httpx.Response) -> None:
    if answer.status_code < 400:
        return
    try:
        detail = answer.json().get("detail")
    except (ValueError, AttributeError):
        detail = None
    raise CliError(f"{detail or answer.reason_phrase} (HTTP {answer.status_code})")
