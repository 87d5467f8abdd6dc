"""Batchline's persistence in Redis: agents, batches and their items, messages.

All timestamps that span processes come from the Redis server clock (`TIME`), so a web
process and workers on other machines measure batch durations against one clock.
"""

from __future__ import annotations

import logging

import redis

from app.store.agents import AgentStore
from app.store.api_keys import ApiKeyStore
from app.store.batches import BatchStore
from app.store.callbacks import CallbackStore
from app.store.claims import ClaimStore
from app.store.commits import CommitStore
from app.store.item_start import ItemStartStore
from app.store.messages import MessageStore
from app.store.model_limits import ModelLimitStore
from app.store.monitor import MonitorStore
from app.store.progress import ProgressStore
from app.store.results import ResultStore
from app.store.runs import RunStore
from app.store.scripts import Scripts
from app.store.secrets import SecretStore
from app.store.sweeps import SweepStore

logger = logging.getLogger(__name__)

#: The only maxmemory-policy under which Redis never drops a key to make room. Every other one
#: may evict Batchline's state; the volatile-* ones evict keys with a TTL, which are the
#: idempotency keys (a retried create would make a second batch) and the callback lock (a
#: callback could be delivered twice).
SAFE_EVICTION_POLICY = "noeviction"

#: Exit status of a process that refuses its Redis: gunicorn's "worker failed to boot", which
#: stops gunicorn instead of restarting the worker forever (dramatiq stops on any failed boot).
UNSAFE_REDIS_EXIT_STATUS = 3


class UnsafeRedis(RuntimeError):
    """Redis is configured to lose keys."""


def connect(url: str) -> redis.Redis:
    return redis.Redis.from_url(url, decode_responses=True, health_check_interval=30)


class Store:
    """All stores over one client."""

    def __init__(self, *, client: redis.Redis) -> None:
        self.client = client
        scripts = Scripts(client=client)
        self.agents = AgentStore(client=client)
        self.api_keys = ApiKeyStore(client=client)
        self.messages = MessageStore(client=client, scripts=scripts)
        self.batches = BatchStore(client=client, scripts=scripts)
        self.runs = RunStore(client=client, scripts=scripts)
        self.starts = ItemStartStore(client=client, scripts=scripts)
        self.claims = ClaimStore(client=client, scripts=scripts)
        self.commits = CommitStore(client=client, scripts=scripts)
        self.secrets = SecretStore(client=client)
        self.progress = ProgressStore(client=client, scripts=scripts)
        self.callbacks = CallbackStore(client=client, scripts=scripts)
        self.sweeps = SweepStore(client=client)
        self.monitor = MonitorStore(client=client)
        self.results = ResultStore(client=client)
        self.blobs = self.batches.blobs
        self.model_limits = ModelLimitStore(client=client, scripts=scripts)

    def client_time(self) -> tuple[int, int]:
        """The Redis server's clock: (seconds, microseconds)."""
        return self.client.time()

    def ping(self) -> bool:
        """Redis answers (raises redis.RedisError when it does not)."""
        return bool(self.client.ping())

    def check_server(self) -> None:
        """Raise UnsafeRedis if Redis may evict keys (read from INFO, which managed Redis services
        answer even where CONFIG is disabled)."""
        policy = self.client.info("memory").get("maxmemory_policy")
        if policy is not None and policy != SAFE_EVICTION_POLICY:
            raise UnsafeRedis(
                f"Redis is configured with maxmemory-policy {policy}: under memory pressure it would delete "
                "batches, items, messages or idempotency keys. Set maxmemory-policy to noeviction (redis.conf, "
                "or CONFIG SET maxmemory-policy noeviction) and start Batchline again.")

    def refuse_unsafe_server(self, process: str) -> None:
        """At a process's start: log and exit (no traceback) if Redis may evict keys. A Redis that
        does not answer yet is not checked here; the probes and the broker report it."""
        try:
            self.check_server()
        except UnsafeRedis as exc:
            logger.error("The %s refuses to start: %s", process, exc)
            raise SystemExit(UNSAFE_REDIS_EXIT_STATUS) from None
        except redis.RedisError as exc:
            logger.warning("Could not check Redis's eviction policy at start (%s); it is unreachable for now.",
                           type(exc).__name__)


__all__ = ["AgentStore", "ApiKeyStore", "BatchStore", "CallbackStore", "ItemStartStore", "MessageStore",
           "ModelLimitStore", "MonitorStore", "ProgressStore", "ResultStore", "RunStore", "SecretStore", "Store",
           "SweepStore", "UnsafeRedis", "connect"]
