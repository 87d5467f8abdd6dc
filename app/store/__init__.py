"""Batchline's persistence in Redis: agents, batches and their items, messages.

All timestamps that span processes come from the Redis server clock (`TIME`), so a web
process and workers on other machines measure batch durations against one clock.
"""

from __future__ import annotations

import redis

from app.store.agents import AgentStore
from app.store.batches import BatchStore
from app.store.callbacks import CallbackStore
from app.store.messages import MessageStore
from app.store.progress import ProgressStore
from app.store.runs import RunStore
from app.store.scripts import Scripts
from app.store.secrets import SecretStore
from app.store.sweeps import SweepStore


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
        self.progress = ProgressStore(client=client, scripts=scripts)
        self.callbacks = CallbackStore(client=client, scripts=scripts)
        self.sweeps = SweepStore(client=client)

    def client_time(self) -> tuple[int, int]:
        """The Redis server's clock: (seconds, microseconds)."""
        return self.client.time()

    def ping(self) -> bool:
        """Redis answers (raises redis.RedisError when it does not)."""
        return bool(self.client.ping())


__all__ = ["AgentStore", "BatchStore", "CallbackStore", "MessageStore", "ProgressStore", "RunStore", "SecretStore",
           "Store", "SweepStore", "connect"]
