"""The JSON body of every route that takes one is checked and parsed here, before
flask-openapi3 and pydantic see it, so a hostile body is a clear 4xx and never a 500.

The json module and the encoders downstream recurse once per level of nesting, so the depth is
measured first, by a scan that never recurses and stays linear in the body's size.
"""

from __future__ import annotations

import inspect
import json
import math
import re
from array import array
from itertools import accumulate
from typing import Any

from flask import Flask, Request, current_app, request

from app.api.errors import ApiError

#: Deepest nesting of arrays and objects a body may have (the body object itself is level 1).
#: Real requests stay far below (a client tool's JSON schema is their deepest part); the json
#: module would fail with a RecursionError near 1,000.
MAX_JSON_DEPTH = 64
#: Integers beyond the signed 64-bit range are refused: JavaScript, Redis and most JSON
#: libraries cannot hold them exactly.
MAX_JSON_INT = 2**63 - 1

_BRACKETS = b"[]{}"
_NOT_STRUCTURE = bytes(set(range(256)) - set(_BRACKETS + b'"'))
#: With escapes gone and only brackets and quotes left, a string is a quote, brackets, a quote.
_STRING = re.compile(rb'"[^"]*"')
#: A `\uXXXX` escape of a UTF-16 surrogate pair, and of a surrogate alone (which no UTF-8 text,
#: hence no stored string, can hold).
_SURROGATE_PAIR = re.compile(rb"\\u[dD][89abAB][0-9a-fA-F]{2}\\u[dD][c-fC-F][0-9a-fA-F]{2}")
_SURROGATE = re.compile(rb"\\u[dD][89a-fA-F][0-9a-fA-F]{2}")
#: `[` and `{` become +1, `]` and `}` become -1 once read as signed bytes.
_DEPTH_STEPS = bytes.maketrans(_BRACKETS, b"\x01\xff\x01\xff")
#: Methods that carry the body; Flask answers OPTIONS (and HEAD) on the same endpoints.
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})
_JSON_TYPE_NAMES = {list: "an array", str: "a string", int: "a number", float: "a number", bool: "a boolean"}


class BodyRefused(ValueError):
    """A body that is not a JSON document Batchline accepts; the message says why."""


class GuardedRequest(Request):
    """A request whose JSON body, once checked, is parsed once and handed out from then on."""

    checked_json: Any = ...

    def get_json(self, force: bool = False, silent: bool = False, cache: bool = True) -> Any:
        if self.checked_json is not ...:
            return self.checked_json
        return super().get_json(force=force, silent=silent, cache=cache)


def json_depth(data: bytes) -> int:
    """The deepest nesting of arrays and objects in `data`, brackets inside strings not counted.

    Linear, and without a Python-level loop over the body. For a document that is not valid
    JSON the answer holds up to where it stops being valid, which is as far as a parser goes.
    """
    # Removing escaped backslashes first, from the left as a lexer pairs them, leaves `\"` as
    # exactly the escaped quotes.
    unescaped = data.replace(b"\\\\", b"").replace(b'\\"', b"")
    structure = unescaped.translate(None, _NOT_STRUCTURE)
    # With every string closed, two quotes side by side are a string's ends, or the ends of two
    # strings with nothing between them: dropping them keeps each bracket inside or outside
    # strings, and leaves no quote at all when no string holds a bracket, without the regex.
    if structure.count(b'"') % 2 == 0:
        structure = structure.replace(b'""', b"")
    if b'"' in structure:
        structure = _STRING.sub(b"", structure).replace(b'"', b"")  # an unterminated string's quote too
    brackets = structure
    return max(accumulate(array("b", brackets.translate(_DEPTH_STEPS))), default=0)


def parse_json(data: bytes) -> Any:
    """Parse a body strictly: UTF-8, at most MAX_JSON_DEPTH levels, no NaN or Infinity, numbers
    a double or a 64-bit integer can hold, no lone surrogate, no key twice in one object.
    Raises BodyRefused."""
    if (depth := json_depth(data)) > MAX_JSON_DEPTH:
        raise BodyRefused(f"arrays and objects are nested {depth} levels deep; the limit is {MAX_JSON_DEPTH}")
    # An escaped backslash becomes two neutral bytes, so that what is left of it and right of it
    # stay apart; a backslash before `u` then always starts a unicode escape.
    if b"\\u" in data and _SURROGATE.search(_SURROGATE_PAIR.sub(b"", data.replace(b"\\\\", b"__"))):
        raise BodyRefused("a string holds a lone UTF-16 surrogate escape (\\uD800 to \\uDFFF), which is not text")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BodyRefused(f"not valid UTF-8 (at byte {exc.start})") from None
    try:
        return json.loads(text, parse_constant=_no_constant, parse_float=_finite_float, parse_int=_int64,
                          object_pairs_hook=_unique_keys)
    except json.JSONDecodeError as exc:
        raise BodyRefused(f"not a valid JSON document ({exc.msg} at line {exc.lineno} column {exc.colno})") from None
    except BodyRefused:
        raise
    except ValueError:  # int() refuses thousands of digits before _int64 can say more
        raise BodyRefused("a number has too many digits") from None


def strict_decoder() -> json.JSONDecoder:
    """A decoder with parse_json's checks of numbers and keys."""
    return json.JSONDecoder(parse_constant=_no_constant, parse_float=_finite_float, parse_int=_int64,
                            object_pairs_hook=_unique_keys)


def _no_constant(name: str) -> Any:
    raise BodyRefused(f"{name} is not a JSON number")


def _finite_float(literal: str) -> float:
    value = float(literal)
    if not math.isfinite(value):
        raise BodyRefused("a number is too large for a double")
    return value


def _int64(literal: str) -> int:
    value = int(literal)
    if not -MAX_JSON_INT - 1 <= value <= MAX_JSON_INT:
        raise BodyRefused("an integer does not fit in 64 bits")
    return value


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    found = dict(pairs)
    if len(found) != len(pairs):
        seen: set[str] = set()
        raise repeated_key(next(key for key, _ in pairs if key in seen or seen.add(key)))
    return found


def repeated_key(key: str) -> BodyRefused:
    named = f" {key!r}" if len(key) <= 64 and key.isprintable() else ""
    return BodyRefused(f"an object has the key{named} twice")


def refused(detail: str) -> ApiError:
    return ApiError(422, f"Invalid request: body: {detail}.", errors=[{"loc": ["body"], "msg": detail}])


def check_json_body() -> None:
    """Before a route that takes a JSON body: 415 for another media type, 422 for a body that
    is empty, not JSON, or not a JSON object; 413 (raised by werkzeug) past the size limit."""
    body_endpoints = current_app.extensions["batchline_body_endpoints"]
    if request.method not in _BODY_METHODS or request.endpoint not in body_endpoints:
        return
    data = request.get_data(cache=True)
    if not data or data.isspace():
        raise refused("the request has no body; send a JSON object")
    check_media_type()
    request.checked_json = parse_object(data)


def check_media_type() -> None:
    """415 unless the body is declared as JSON in UTF-8."""
    if not request.is_json:
        raise ApiError(415, "Unsupported Content-Type: send the body as application/json.")
    charset = request.mimetype_params.get("charset", "utf-8").lower()
    if charset not in ("utf-8", "utf8"):
        raise ApiError(415, "Unsupported charset: JSON bodies are UTF-8.")


def parse_object(data: bytes) -> dict[str, Any]:
    """The body, which must be a JSON object; a 422 naming what is wrong otherwise."""
    try:
        parsed = parse_json(data)
    except BodyRefused as exc:
        raise refused(str(exc)) from None
    if not isinstance(parsed, dict):
        kind = "null" if parsed is None else _JSON_TYPE_NAMES.get(type(parsed), "not an object")
        raise refused(f"the body is {kind}; send a JSON object")
    return parsed


def install(app: Flask) -> None:
    """Check the body of every route whose view takes a `body` (as flask-openapi3 declares it)."""
    app.request_class = GuardedRequest
    app.extensions["batchline_body_endpoints"] = frozenset(
        name for name, view in app.view_functions.items() if "body" in inspect.signature(view).parameters)
    app.before_request(check_json_body)
