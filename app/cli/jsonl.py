"""Reading a JSONL file of batch requests, with errors that name the line."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from app.cli.client import CliError


def read_requests(path: Path, *, agent_id: str | None) -> tuple[list[dict[str, Any]], list[int]]:
    """One LettaBatchRequest object per non-blank line; `agent_id` fills lines that have none.
    Returns the requests and the line number of each."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise CliError(f"Cannot read {path}: {exc}") from None
    requests: list[dict[str, Any]] = []
    numbers: list[int] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            request = json.loads(line)
        except json.JSONDecodeError as exc:
            raise CliError(f"{path}, line {number}: not valid JSON ({exc.msg}, column {exc.colno}).") from None
        if not isinstance(request, dict):
            raise CliError(f"{path}, line {number}: expected a JSON object (a request), got {type(request).__name__}.")
        if not request.get("agent_id"):
            if agent_id is None:
                raise CliError(f"{path}, line {number}: the request has no agent_id; add one or pass --agent.")
            request["agent_id"] = agent_id
        requests.append(request)
        numbers.append(number)
    if not requests:
        raise CliError(f"{path} holds no request (one JSON object per line is expected).")
    return requests, numbers


def name_lines(message: str, path: Path, numbers: list[int]) -> str:
    """An API error about `requests[i]` (or `requests.i`) also names the file's line."""
    found = re.search(r"requests(?:\[|\.)(\d+)", message)
    if found is None or int(found.group(1)) >= len(numbers):
        return message
    return f"{path}, line {numbers[int(found.group(1))]}: {message}"
