"""The Dramatiq broker. Built at import, because the `dramatiq` CLI imports this module; it is
the one place in Batchline that reads settings at import time."""

from __future__ import annotations

import dramatiq
from dramatiq.brokers.redis import RedisBroker
from dramatiq.middleware import AsyncIO

from actors.middleware import RuntimeMiddleware
from app.embedded_redis import ensure_embedded_redis
from app.logs import quiet_chatty_loggers
from app.message_ledger import MessageLedger
from app.settings import Settings
from app.store import Store, connect

#: Chance (per million broker commands) that a command also requeues dead workers' messages.
#: Dramatiq's default (1,000) leaves a dead worker's chunks waiting for minutes on quiet queues.
MAINTENANCE_CHANCE = 20_000

settings = Settings()
quiet_chatty_loggers()
redis_url = settings.redis_url or ensure_embedded_redis(settings.var_dir, appendfsync=settings.redis_appendfsync)
broker = RedisBroker(url=settings.broker_url or redis_url,
                     heartbeat_timeout=int(settings.worker_heartbeat_timeout_s * 1000),
                     maintenance_chance=MAINTENANCE_CHANCE)
async_io = AsyncIO()
broker.add_middleware(async_io)
# After AsyncIO: "after" hooks run in reverse order, so at shutdown the runtime closes while the
# event loop still runs.
broker.add_middleware(RuntimeMiddleware(settings=settings, redis_url=redis_url))
broker.add_middleware(MessageLedger(store=Store(client=connect(redis_url))))
dramatiq.set_broker(broker)
