"""Names of the pipeline's Dramatiq actors and queues, and a sender that enqueues by name.

The web process enqueues through `TaskQueue` over its own broker instead of importing the
`actors` package, whose broker module builds from the environment at import.
"""

from __future__ import annotations

from typing import Any

import dramatiq
from dramatiq.brokers.redis import RedisBroker

BATCHES_QUEUE = "batches"
ITEMS_QUEUE = "items"
CALLBACKS_QUEUE = "callbacks"

START_BATCH = "start_batch"
RUN_CHUNK = "run_chunk"
FINALIZE_BATCH = "finalize_batch"
SEND_CALLBACK = "send_callback"

QUEUE_OF = {
    START_BATCH: BATCHES_QUEUE,
    FINALIZE_BATCH: BATCHES_QUEUE,
    RUN_CHUNK: ITEMS_QUEUE,
    SEND_CALLBACK: CALLBACKS_QUEUE,
}


class TaskQueue:
    def __init__(self, *, broker: RedisBroker) -> None:
        self.broker = broker

    def send(self, actor_name: str, *args: Any, delay_ms: int | None = None) -> str:
        """Enqueue a message for the actor; returns the id the broker keeps it under (the
        broker's MessageLedger middleware records it where the reconciler looks; app/queues.py
        tells whether it is still alive)."""
        message = dramatiq.Message(queue_name=QUEUE_OF[actor_name], actor_name=actor_name, args=args,
                                   kwargs={}, options={})
        return self.broker.enqueue(message, delay=delay_ms).options["redis_message_id"]
