"""Batch-end callbacks: the payload, Standard Webhooks signatures, the refusal of private
targets (SSRF), and one delivery attempt. Retrying is the callback actor's job."""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import json
import secrets
import socket
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx

#: Addresses never reachable by a callback, whatever else is allowed (cloud metadata services).
METADATA_ADDRESSES = frozenset({ipaddress.ip_address("169.254.169.254"), ipaddress.ip_address("fd00:ec2::254")})
SECRET_PREFIX = "whsec_"


class UnsafeCallbackTarget(ValueError):
    """The callback URL points somewhere Batchline refuses to send to."""


@dataclass(frozen=True)
class DeliveryResult:
    sent_us: int
    status_code: int | None
    error: str | None

    @property
    def delivered(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


def new_secret() -> str:
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(24)).decode()


def sign(secret: str, *, webhook_id: str, timestamp: int, body: bytes) -> str:
    """`v1,<base64 HMAC-SHA256 of "id.timestamp.body">` per Standard Webhooks."""
    key = base64.b64decode(secret.removeprefix(SECRET_PREFIX)) if secret.startswith(SECRET_PREFIX) \
        else secret.encode()
    signed = f"{webhook_id}.{timestamp}.".encode() + body
    return "v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()


def payload(batch: dict[str, Any]) -> dict[str, Any]:
    return {key: batch[key] for key in ("status", "completed_at", "metadata", "request_counts")} | {
        "job_id": batch["id"]}


def check_target(url: str, *, allow_private: bool) -> None:
    """Raise UnsafeCallbackTarget unless every address the host resolves to may be called."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UnsafeCallbackTarget("callback_url must be an absolute http:// or https:// URL")
    try:
        infos = socket.getaddrinfo(parts.hostname, parts.port or (443 if parts.scheme == "https" else 80),
                                   type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise UnsafeCallbackTarget(f"callback_url host {parts.hostname!r} does not resolve") from exc
    for info in infos:
        address = ipaddress.ip_address(info[4][0].split("%")[0])
        if address in METADATA_ADDRESSES:
            raise UnsafeCallbackTarget(f"callback_url host {parts.hostname!r} is a cloud metadata address")
        private = address.is_private or address.is_loopback or address.is_link_local or address.is_reserved \
            or address.is_multicast or address.is_unspecified
        if private and not allow_private:
            raise UnsafeCallbackTarget(
                f"callback_url host {parts.hostname!r} resolves to a private, loopback or link-local address; "
                "set BATCHLINE_CALLBACK_ALLOW_PRIVATE=true to allow it")


def deliver(url: str, body: dict[str, Any], *, webhook_id: str, secret: str, client: httpx.Client,
            allow_private: bool) -> DeliveryResult:
    """One POST of the callback; redirects are not followed (a 3xx counts as a failure)."""
    sent_us = time.time_ns() // 1000
    try:
        check_target(url, allow_private=allow_private)
    except UnsafeCallbackTarget as exc:
        return DeliveryResult(sent_us, None, str(exc))
    data = json.dumps(body, separators=(",", ":")).encode()
    timestamp = int(time.time())
    headers = {
        "content-type": "application/json",
        "user-agent": "Batchline-Webhooks/1",
        "webhook-id": webhook_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": sign(secret, webhook_id=webhook_id, timestamp=timestamp, body=data),
    }
    try:
        response = client.post(url, content=data, headers=headers, follow_redirects=False)
    except httpx.HTTPError as exc:
        return DeliveryResult(sent_us, None, f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__)
    error = None if 200 <= response.status_code < 300 else f"callback endpoint answered HTTP {response.status_code}"
    return DeliveryResult(sent_us, response.status_code, error)
