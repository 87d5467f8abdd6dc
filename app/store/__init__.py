"""Batchline's persistence in Redis: agents, batches and their items, messages.

All timestamps that span processes come from the Redis server clock (`TIME`), so a web
process and workers on other machines measure batch durations against one clock.
"""

from __future__ import annotations

import redis

from app.store.agents import AgentStore
from app.store.batches import BatchStore
from app.store.messages import MessageStore
from app.store.runs import RunStore
from app.store.scripts import Scripts
from app.store.secrets import SecretStore


def connect(url: str) -> redis.Redis:
    return redis.Redis.from_url(url, decode_responses=True, health_check_interval=30)


class Store:
    """All stores over one client."""

    def __init__(self, *, client: redis.Redis) -> None:
        self.client = client
        scripts = Scripts(client=client)
        self.agents = AgentStore(client=client)
        self.messages = MessageStore(client=client)
        self.batches = BatchStore(client=client, scripts=scripts)
        self.runs = RunStore(client=client, scripts=scripts)
        self.secrets = SecretStore(client=client)

    def ping(self) -> bool:
        """Redis answers (raises redis.RedisError when it does not)."""
        return bool(self.client.ping())


__all__ = ["AgentStore", "BatchStore", "MessageStore", "RunStore", "SecretStore", "Store", "connect"]
