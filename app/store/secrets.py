"""Secrets that Batchline generates itself when the operator sets none: each tenant's webhook
signing secret."""

from __future__ import annotations

from collections.abc import Callable

import redis

from app.store import keys


class SecretStore:
    def __init__(self, *, client: redis.Redis) -> None:
        self.client = client

    def webhook_secret(self, tenant: str, *, generate: Callable[[], str]) -> str:
        """`tenant`'s callback signing secret: generated on first use, then the same for every
        process (the first writer wins a race)."""
        key = keys.webhook_secret(tenant)
        self.client.set(key, generate(), nx=True)
        return self.client.get(key)
