"""Records, in Batchline's own state, which Dramatiq message carries each piece of a batch's
work, every time one is enqueued: a first send, a retry (Dramatiq's Redis broker gives each
enqueue a new id), or the reconciler's replacement. The reconciler checks those messages are
still alive; one that is not is replaced."""

from __future__ import annotations

import dramatiq
from dramatiq.middleware import Middleware

from app.store import Store
from app.store.progress import Chunk
from app.tasks import RUN_CHUNK, SEND_CALLBACK, START_BATCH


def broker_message_id(message: dramatiq.Message) -> str:
    """The id under which the Redis broker keeps this enqueued message."""
    return message.options["redis_message_id"]


class MessageLedger(Middleware):
    """Installed on every broker that enqueues Batchline's actors (web and workers)."""

    def __init__(self, *, store: Store) -> None:
        self.store = store

    def after_enqueue(self, broker: dramatiq.Broker, message: dramatiq.Message, delay: int | None) -> None:
        message_id = broker_message_id(message)
        if message.actor_name == START_BATCH:
            self.store.progress.record_start(message.args[0], message_id=message_id)
        elif message.actor_name == RUN_CHUNK:
            batch_id, start, stop = message.args
            self.store.progress.record_chunk(Chunk(start, stop, message_id), batch_id=batch_id)
        elif message.actor_name == SEND_CALLBACK:
            self.store.callbacks.record_message(message.args[0], message_id=message_id)
