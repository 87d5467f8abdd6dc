"""JSON that Redis's Lua scripts can decode. Their decoder (cjson) refuses a lone UTF-16
surrogate escape (`"\\ud800"`), which Python's json module writes for a str that holds one, and
such a str is easy to get: JSON allows the escape, so a model's tool arguments or a provider's
error body can carry one (a client's fields are refused by validation). A script that met one
failed the run's commit, and a memory block that held one failed every later commit that edited
it, so each lone surrogate is stored as U+FFFD instead.
"""

from __future__ import annotations

import json
import re
from typing import Any

#: A surrogate code point in a Python str is always a lone one (a valid pair is one code point).
_SURROGATE = re.compile("[\ud800-\udfff]")
REPLACEMENT = "\ufffd"


def lua_text(text: str) -> str:
    """`text` with each lone surrogate replaced by U+FFFD."""
    return _SURROGATE.sub(REPLACEMENT, text)


def lua_json(value: Any) -> str:
    """`json.dumps(value)`, with each lone surrogate in its strings replaced by U+FFFD."""
    encoded = json.dumps(value)
    if "\\ud" not in encoded:  # no surrogate escape at all: the usual case, one encode
        return encoded
    return json.dumps(_scrubbed(value))


def _scrubbed(value: Any) -> Any:
    if isinstance(value, str):
        return lua_text(value)
    if isinstance(value, dict):
        return {lua_text(key) if isinstance(key, str) else key: _scrubbed(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_scrubbed(item) for item in value]
    return value
