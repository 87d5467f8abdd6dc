"""API keys: only their SHA-256 hashes are stored. A key maps to one tenant; a tenant may hold
several keys, each revocable on its own."""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import secrets
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import redis

from app.ids import now_iso
from app.store import keys
from app.tenancy import check_tenant

logger = logging.getLogger(__name__)

#: Every key starts with this, so that a leaked one is recognisable (secret scanners, logs).
KEY_PREFIX = "bl_"
#: Random bytes in a key (256 bits).
KEY_BYTES = 32
#: A key's "last used" time is written at most this often per process (a write per request
#: would double the Redis traffic of a busy client).
LAST_USED_RESOLUTION_S = 60.0


#: Key ids remembered per process (keys that authenticated); past this, the memory starts afresh.
MAX_REMEMBERED_KEYS = 10_000
#: Queues one command (about a key id) on the pipeline of a key lookup: app/api/rate_limits.py
#: counts the call this way, and a route reads what it needs, in the lookup's round trip.
Rider = Callable[[redis.client.Pipeline, str], None]

#: A key's name is the operator's note of what it is for.
MAX_NAME_CHARS = 100


class InvalidKeyName(ValueError):
    """A key name that is empty, too long or not printable text."""


@dataclass(frozen=True)
class ApiKey:
    id: str
    name: str
    tenant: str
    created_at: str
    last_used_at: str | None = None


def key_hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def looks_like_key(secret: str) -> bool:
    return secret.startswith(KEY_PREFIX) and 16 < len(secret) < 200 and secret.isascii() and secret.isprintable()


class ApiKeyStore:
    def __init__(self, *, client: redis.Redis) -> None:
        self.client = client
        self._touched: dict[str, float] = {}
        #: Key ids by the hash of their secret, as last found (what a Rider rides on).
        self._ids: dict[str, str] = {}

    def create(self, *, tenant: str, name: str, secret: str | None = None) -> tuple[ApiKey, str]:
        """A new key for `tenant`: (its record, the key itself, shown to the caller once).
        `secret` registers a key made elsewhere (the key file of a first start)."""
        if not name.strip() or len(name) > MAX_NAME_CHARS or not name.isprintable():
            raise InvalidKeyName(f"a key name must be 1 to {MAX_NAME_CHARS} printable characters")
        secret = secret or KEY_PREFIX + secrets.token_urlsafe(KEY_BYTES)
        record = ApiKey(id="key_" + secrets.token_hex(8), name=name, tenant=check_tenant(tenant),
                        created_at=now_iso())
        digest = key_hash(secret)
        with self.client.pipeline(transaction=True) as pipe:
            pipe.hset(keys.API_KEYS_BY_HASH, digest, json.dumps({**asdict(record), "sha256": digest}))
            pipe.hset(keys.API_KEY_IDS, record.id, digest)
            pipe.execute()
        return record, secret

    def authenticate(self, secret: str) -> ApiKey | None:
        """The key's record, or None for an unknown or revoked key, in one round trip. The lookup
        is by hash, so the stored value never meets the presented one in a comparison that could
        leak its prefix; the hash found is compared again in constant time. (Revoking deletes the
        record in one transaction, so a record found is a live key.)"""
        return self.authenticate_with(secret, [])[0]

    def authenticate_with(self, secret: str, riders: Sequence[Rider]) -> tuple[ApiKey | None, list[Any]]:
        """`authenticate`, with each rider's command for the key's id sent in the same round trip:
        (the record, the riders' replies). The id is the one this process last found for the same
        secret (a key's id never changes while it lives); the list is empty when they did not
        ride (the first call of a key in this process, or an unknown key), and a reply may be an
        exception (the pipeline does not raise for it)."""
        if not looks_like_key(secret):
            return None, []
        digest = key_hash(secret)
        known_id = self._ids.get(digest) if riders else None
        if known_id is None:
            raw, replies = self.client.hget(keys.API_KEYS_BY_HASH, digest), []
        else:
            with self.client.pipeline(transaction=False) as pipe:
                pipe.hget(keys.API_KEYS_BY_HASH, digest)
                for rider in riders:
                    rider(pipe, known_id)
                raw, *replies = pipe.execute(raise_on_error=False)
            if isinstance(raw, Exception):
                raise raw
        if raw is None:
            self._ids.pop(digest, None)
            return None, []
        fields = json.loads(raw)
        if not hmac.compare_digest(fields.pop("sha256", digest), digest):
            return None, []
        record = ApiKey(**fields)
        if record.id != known_id:
            # The same secret registered again under a new id: what rode was for the old one.
            replies = []
            if len(self._ids) >= MAX_REMEMBERED_KEYS:
                self._ids.clear()
            self._ids[digest] = record.id
        self._touch(record.id)
        return record, replies

    def _touch(self, key_id: str) -> None:
        now = time.monotonic()
        if now - self._touched.get(key_id, -LAST_USED_RESOLUTION_S) >= LAST_USED_RESOLUTION_S:
            self._touched[key_id] = now
            try:
                self.client.hset(keys.API_KEY_LAST_USED, key_id, now_iso())
            except redis.RedisError as exc:
                # Bookkeeping only: a read must not fail because Redis refuses writes (full, a replica).
                logger.warning("Could not record the last use of API key %s (%s)", key_id, type(exc).__name__)

    def list(self) -> list[ApiKey]:
        digests = self.client.hgetall(keys.API_KEY_IDS)
        if not digests:
            return []
        records = self.client.hmget(keys.API_KEYS_BY_HASH, list(digests.values()))
        used = self.client.hgetall(keys.API_KEY_LAST_USED)
        found = [ApiKey(**{**_fields(raw), "last_used_at": used.get(key_id)})
                 for key_id, raw in zip(digests, records, strict=True) if raw is not None]
        return sorted(found, key=lambda key: key.created_at)

    def revoke(self, key_id: str) -> bool:
        """Forget the key: the next call that presents it gets 401."""
        digest = self.client.hget(keys.API_KEY_IDS, key_id)
        if digest is None:
            return False
        with self.client.pipeline(transaction=True) as pipe:
            pipe.hdel(keys.API_KEYS_BY_HASH, digest)
            pipe.hdel(keys.API_KEY_IDS, key_id)
            pipe.hdel(keys.API_KEY_LAST_USED, key_id)
            pipe.execute()
        return True

    def count(self) -> int:
        return self.client.hlen(keys.API_KEY_IDS)

    def claim_bootstrap(self, *, owner: str, ttl_s: float) -> bool:
        """One process at a time makes the first key (two web workers start together)."""
        return bool(self.client.set(keys.API_KEY_BOOTSTRAP, owner, nx=True, px=int(ttl_s * 1000)))

    def release_bootstrap(self) -> None:
        self.client.delete(keys.API_KEY_BOOTSTRAP)


def _fields(raw: str) -> dict:
    """A stored record without its hash (which `keys list` must never show)."""
    fields = json.loads(raw)
    fields.pop("sha256", None)
    return fields
