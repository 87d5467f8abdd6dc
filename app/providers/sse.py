"""The HTTP plumbing both real providers share: opening a Server-Sent Events stream (parsed by
app/providers/events.py), turning HTTP and network failures into ProviderError.
"""

from __future__ import annotations

import email.utils
import functools
import json
import re
import time
from collections.abc import AsyncIterator, Iterable, Mapping
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import httpx
from pydantic import SecretStr

from app.providers.base import InvalidResponseError, ProviderError
from app.providers.events import Event, EventStream
from app.providers.http import StreamClient

#: 408 and 409 are worth retrying too: both APIs use them for transient conflicts and timeouts.
RETRYABLE_STATUSES = frozenset({408, 409, 429})
#: What aiohttp refuses in a header value.
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
#: Error bodies can be whole HTML pages from a proxy; an item's error needs only the gist.
MAX_ERROR_TEXT = 1000


def parse_retry_after(headers: Mapping[str, str], *, now: float | None = None) -> float | None:
    """Seconds to wait from `retry-after-ms` (OpenAI's, more precise, so preferred) or
    `Retry-After` (delta-seconds or an HTTP date). None when absent or unreadable."""
    ms = headers.get("retry-after-ms")
    if ms is not None:
        try:
            return max(0.0, float(ms) / 1000.0)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when is None:
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def error_text(body: bytes, *, fallback: str) -> str:
    """The provider's own explanation: `error.message` (OpenAI, Anthropic), `message` (vLLM),
    `detail` (FastAPI servers), else the body text itself."""
    text = body.decode("utf-8", errors="replace").strip()
    try:
        payload: Any = json.loads(text)
    except ValueError:
        payload = None
    if isinstance(payload, dict):
        err = payload.get("error")
        if isinstance(err, dict) and isinstance(err.get("message"), str):
            text = err["message"]
        elif isinstance(err, str):
            text = err
        elif isinstance(payload.get("message"), str):
            text = payload["message"]
        elif isinstance(payload.get("detail"), str):
            text = payload["detail"]
    text = text or fallback
    return text if len(text) <= MAX_ERROR_TEXT else text[:MAX_ERROR_TEXT] + "..."


def plain_secret(key: str | SecretStr | None) -> str | None:
    """Providers keep a SecretStr wrapped and unwrap it only while building request headers."""
    return key.get_secret_value() if isinstance(key, SecretStr) else key


@functools.lru_cache(maxsize=1024)  # asked on every call with the same few URLs; parsing two costs ~10 us
def same_origin(a: str, b: str) -> bool:
    try:
        ua, ub = httpx.URL(a), httpx.URL(b)
    except (httpx.InvalidURL, TypeError):
        return False
    return (ua.scheme, ua.host, ua.port) == (ub.scheme, ub.host, ub.port)


def key_for(target_url: str, base_url: str, key: str | SecretStr | None) -> tuple[str | None, str | None]:
    """(key, auth_hint): the configured key, unwrapped, but only for the configured base URL's
    own origin. An agent's model_endpoint is user input, and pointing it at another host must
    not hand that host the operator's key; the hint explains a resulting 401."""
    if key is None or same_origin(target_url, base_url):
        return plain_secret(key), None
    return None, f"the configured API key is only sent to {base_url}, not to this agent's model_endpoint"


def redact(text: str, secrets: Iterable[str | None]) -> str:
    """Some APIs echo (part of) a bad key back, and HTTP libraries quote a header value they
    refuse with its control characters escaped; an item's error must never carry either."""
    for secret in secrets:
        if not secret:
            continue
        for form in {secret, secret.strip(), repr(secret)[1:-1]}:
            if form:
                text = text.replace(form, "[redacted]")
    return text


def stream_error(label: str, err: Any) -> ProviderError:
    """An `error` object that arrived inside a stream (mid-stream overload, server fault)."""
    if isinstance(err, dict):
        message = str(err.get("message") or err.get("type") or "unknown error")
        kind = f"{err.get('type', '')} {err.get('code', '')}".lower()
        code = err.get("code")
    else:
        message, kind, code = str(err), "", None
    status = code if isinstance(code, int) else None
    # Errors that arrive mid-stream are nearly always transient capacity or server faults.
    retryable = (status is not None and (status in RETRYABLE_STATUSES or status >= 500)) or any(
        word in kind for word in ("overloaded", "rate_limit", "server", "api_error", "timeout")
    )
    return ProviderError(f"{label} stream error: {message}", status_code=status, retryable=retryable)


@asynccontextmanager
async def open_sse(
    client: StreamClient,
    url: str,
    *,
    label: str,
    body: bytes,
    headers: dict[str, str],
    secrets: Iterable[str | None] = (),
    auth_hint: str | None = None,
) -> AsyncIterator[AsyncIterator[list[Event]]]:
    """POST `body` (JSON) and yield the response's SSE events, a list of them per network read.

    Leaving the `async with` (also when the awaiting task is cancelled mid-stream) closes the
    connection of an unfinished stream. Network failures while connecting or reading (also those
    raised inside the caller's `async with` body) become retryable ProviderErrors. `auth_hint` is
    added to a 401/403's message.
    """
    secrets = tuple(secrets)
    if any(_CONTROL.search(value) for value in headers.values()):
        # aiohttp refuses such a header with a bare ValueError; it is a configuration error (most
        # likely a key pasted with its newline), so it is final, and the value is not quoted.
        raise ProviderError(f"{label} request was not sent: a header value (the API key?) contains a line break "
                            "or another control character")
    try:
        async with client.post(url, body=body, headers=headers) as response:
            if response.status >= 300:
                raw = await response.read()
                raise _status_error(label, response, raw, secrets, auth_hint)
            yield EventStream(response.content)
    except (ProviderError, InvalidResponseError) as exc:
        # Raised while reading the stream too (an error event, a chunk that is no JSON), quoting
        # what the provider sent, which may echo the key: it goes to logs and the item's error.
        exc.args = (redact(str(exc), secrets), *exc.args[1:])
        raise
    except aiohttp.NonHttpUrlClientError as exc:
        raise ProviderError(f"{label} endpoint URL is not http(s): {exc}") from exc
    except (aiohttp.InvalidURL, httpx.InvalidURL) as exc:
        raise ProviderError(f"{label} endpoint URL is invalid: {exc}") from exc
    except TimeoutError as exc:  # aiohttp's connect and read timeouts are TimeoutErrors too
        raise ProviderError(f"{label} request timed out ({type(exc).__name__})", retryable=True) from exc
    except (aiohttp.ClientError, OSError) as exc:
        raise ProviderError(
            redact(f"{label} connection failed ({type(exc).__name__}: {exc})", secrets), retryable=True
        ) from exc


def _status_error(label: str, response: aiohttp.ClientResponse, raw: bytes, secrets: tuple[str | None, ...],
                  auth_hint: str | None) -> ProviderError:
    status = response.status
    if status < 400:
        # Redirects are not followed: a POST with a key must not wander to another host.
        where = response.headers.get("location", "elsewhere")
        return ProviderError(f"{label} returned {status} (redirect to {where}); set the endpoint to "
                             "the final URL", status_code=status)
    message = redact(error_text(raw, fallback=response.reason or "no error message"), secrets)
    if auth_hint and status in (401, 403):
        message = f"{message} ({auth_hint})"
    return ProviderError(
        f"{label} returned {status}: {message}",
        status_code=status,
        retryable=status in RETRYABLE_STATUSES or status >= 500,
        retry_after_s=parse_retry_after(response.headers),
    )


def decode_json(data: bytes, label: str, what: str) -> dict[str, Any]:
    """One SSE `data:` payload as a JSON object, or InvalidResponseError naming the provider."""
    try:
        text = data.decode()
    except UnicodeDecodeError:
        text = data.decode("utf-8", "replace")  # U+FFFD, as a text decoder of the stream would make them
    try:
        payload = json.loads(text)
    except ValueError as exc:
        raise InvalidResponseError(f"{label} stream carried data that is not JSON: {_shown(data)!r}") from exc
    if not isinstance(payload, dict):
        raise InvalidResponseError(f"{label} stream carried a non-object {what}: {_shown(data)!r}")
    return payload


def _shown(data: bytes) -> str:
    return data[:200].decode("utf-8", "replace")
