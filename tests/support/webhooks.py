"""A receiver's check of a Standard Webhooks signature, written from the specification alone (not
from app/callbacks.py), so the tests compare Batchline against an independent verifier."""

from __future__ import annotations

import base64
import hashlib
import hmac
import time

#: How far a delivery's timestamp may be from the receiver's clock (the specification's example: 5 min).
TOLERANCE_S = 300


def verify(secret: str, *, headers: dict[str, str], body: bytes, now_s: float | None = None) -> bool:
    """Whether one of the `v1` signatures in `webhook-signature` is the HMAC-SHA256, keyed by the
    base64-decoded part of `secret` after `whsec_`, of `<webhook-id>.<webhook-timestamp>.<body>`,
    and the timestamp is recent."""
    try:
        msg_id, timestamp = headers["webhook-id"], headers["webhook-timestamp"]
        signatures = headers["webhook-signature"].split(" ")
        key = base64.b64decode(secret.removeprefix("whsec_"), validate=True)
        sent_s = int(timestamp)
    except (KeyError, ValueError):
        return False
    if abs((time.time() if now_s is None else now_s) - sent_s) > TOLERANCE_S:
        return False
    expected = base64.b64encode(hmac.new(key, f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256).digest())
    return any(version == "v1" and hmac.compare_digest(signature.encode(), expected)
               for version, _, signature in (each.partition(",") for each in signatures))
