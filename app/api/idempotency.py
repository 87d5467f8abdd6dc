"""The `Idempotency-Key` of a batch create: the header, bounded, and the fingerprint of the body
it is bound to (a reused key with another body is a 409, as on Stripe)."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from flask import request

from app.api.errors import invalid_field
from app.schemas.batches import CreateBatch

#: Longest Idempotency-Key accepted (Stripe's bound): it is stored, and quoted in a 409.
MAX_IDEMPOTENCY_KEY_CHARS = 255
HEADER = "Idempotency-Key"


def idempotency_key() -> str | None:
    """The request's key; None when absent or empty. Too long is a 422 that does not quote it."""
    key = request.headers.get(HEADER) or None
    if key is not None and len(key) > MAX_IDEMPOTENCY_KEY_CHARS:
        raise invalid_field(["header", HEADER], f"must be at most {MAX_IDEMPOTENCY_KEY_CHARS} characters "
                                                f"(got {len(key)})")
    return key


def requests_digest() -> Any:
    """What a create updates with each stored request line (StagedRequests.digest)."""
    return hashlib.sha256()


def body_fingerprint(body: CreateBatch, digest: Any) -> str:
    """SHA-256 of the other fields as canonical JSON and of the stored requests: two bodies that
    mean the same (key order, spacing, an explicit default) have the same fingerprint. The stored
    line of a request is canonical already (the validated model, serialized in field order), so
    the requests are hashed as the create writes them, never held."""
    canonical = json.dumps(body.model_dump(mode="json", include={"callback_url", "metadata"}),
                           sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode() + b"\n" + digest.digest()).hexdigest()
