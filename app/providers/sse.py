"""Server-Sent Events over an httpx streaming response, and the HTTP plumbing both real
providers share: opening the stream, turning HTTP and network failures into ProviderError.
"""

from __future__ import annotations

import email.utils
import json
import time
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx
from pydantic import SecretStr

from app.providers.base import InvalidResponseError, ProviderError

#: 408 and 409 are worth retrying too: both APIs use them for transient conflicts and timeouts.
RETRYABLE_STATUSES = frozenset({408, 409, 429})
#: Error bodies can be whole HTML pages from a proxy; an item's error needs only the gist.
MAX_ERROR_TEXT = 1000


@dataclass(frozen=True)
class SSEEvent:
    event: str
    data: str
    id: str | None = None


async def iter_sse(lines: AsyncIterator[str]) -> AsyncIterator[SSEEvent]:
    """Parse SSE lines (already split, without line terminators) into events.

    A pending event is still dispatched when the stream ends without the final blank line:
    some OpenAI-compatible servers omit it after `data: [DONE]`, and the spec's "discard it"
    would turn their last event into a bogus truncated-stream error.
    """
    event_type = ""
    data: list[str] = []
    event_id: str | None = None
    async for raw in lines:
        line = raw.rstrip("\r\n")
        if not line:
            if data:
                yield SSEEvent(event=event_type or "message", data="\n".join(data), id=event_id)
            event_type, data = "", []
            continue
        if line.startswith(":"):
            continue  # a comment: servers send these as keep-alives
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "data":
            data.append(value)
        elif name == "event":
            event_type = value
        elif name == "id":
            event_id = value
        # "retry" and unknown fields are ignored, as the spec says
    if data:
        yield SSEEvent(event=event_type or "message", data="\n".join(data), id=event_id)


def parse_retry_after(headers: httpx.Headers, *, now: float | None = None) -> float | None:
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
    client: httpx.AsyncClient,
    url: str,
    *,
    label: str,
    body: dict[str, Any],
    headers: dict[str, str],
    secrets: Iterable[str | None] = (),
    auth_hint: str | None = None,
) -> AsyncIterator[AsyncIterator[SSEEvent]]:
    """POST `body` and yield the response's SSE events.

    `async with client.stream` guarantees the connection is closed when the awaiting task is
    cancelled mid-stream. Network failures while connecting or reading (also those raised
    inside the caller's `async with` body) become retryable ProviderErrors. `auth_hint` is
    added to a 401/403's message.
    """
    secrets = tuple(secrets)
    try:
        async with client.stream("POST", url, json=body, headers=headers) as response:
            if response.status_code >= 300:
                raw = await response.aread()
                raise _status_error(label, response, raw, secrets, auth_hint)
            yield iter_sse(response.aiter_lines())
    except (ProviderError, InvalidResponseError) as exc:
        # Raised while reading the stream too (an error event, a chunk that is no JSON), quoting
        # what the provider sent, which may echo the key: it goes to logs and the item's error.
        exc.args = (redact(str(exc), secrets), *exc.args[1:])
        raise
    except httpx.InvalidURL as exc:
        raise ProviderError(f"{label} endpoint URL is invalid: {exc}") from exc
    except httpx.UnsupportedProtocol as exc:
        raise ProviderError(f"{label} endpoint URL is not http(s): {exc}") from exc
    except httpx.TimeoutException as exc:
        raise ProviderError(f"{label} request timed out ({type(exc).__name__})", retryable=True) from exc
    except httpx.TransportError as exc:
        raise ProviderError(
            redact(f"{label} connection failed ({type(exc).__name__}: {exc})", secrets), retryable=True
        ) from exc
    except httpx.DecodingError as exc:
        raise InvalidResponseError(f"{label} response could not be decoded: {exc}") from exc


def _status_error(label: str, response: httpx.Response, raw: bytes, secrets: tuple[str | None, ...],
                  auth_hint: str | None) -> ProviderError:
    status = response.status_code
    if status < 400:
        # Redirects are not followed: a POST with a key must not wander to another host.
        where = response.headers.get("location", "elsewhere")
        return ProviderError(f"{label} returned {status} (redirect to {where}); set the endpoint to "
                             "the final URL", status_code=status)
    message = redact(error_text(raw, fallback=response.reason_phrase or "no error message"), secrets)
    if auth_hint and status in (401, 403):
        message = f"{message} ({auth_hint})"
    return ProviderError(
        f"{label} returned {status}: {message}",
        status_code=status,
        retryable=status in RETRYABLE_STATUSES or status >= 500,
        retry_after_s=parse_retry_after(response.headers),
    )


def decode_json(data: str, label: str, what: str) -> dict[str, Any]:
    """One SSE `data:` payload as a JSON object, or InvalidResponseError naming the provider."""
    try:
        payload = json.loads(data)
    except ValueError as exc:
        raise InvalidResponseError(f"{label} stream carried data that is not JSON: {data[:200]!r}") from exc
    if not isinstance(payload, dict):
        raise InvalidResponseError(f"{label} stream carried a non-object {what}: {data[:200]!r}")
    return payload
