"""Installation-wide secrets that Batchline generates itself when the operator sets none."""

from __future__ import annotations

from collections.abc import Callable

import redis

from app.store import keys


class SecretStore:
    def __init__(self, *, client: redis.Redis) -> None:
        self.client = client

    def webhook_secret(self, *, generate: Callable[[], str]) -> str:
        """The installation's callback signing secret: generated once, then the same for every
        process (the first writer wins a race)."""
        self.client.set(keys.WEBHOOK_SECRET, generate(), nx=True)
        return self.client.get(keys.WEBHOOK_SECRET)
