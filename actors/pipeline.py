"""The batch pipeline: start (fan out in chunks) -> run_chunk (items run concurrently on the
event loop) -> finalize (terminal status, then the callback). Batch completion is decided by
Batchline's own counters in Redis, never by Dramatiq group callbacks (which miss children that
fail for good). Each message's id is recorded where the reconciler can check it is still alive
(app/message_ledger.py, actors/reconciler.py), so a lost message is replaced rather than waited for."""

from __future__ import annotations

import logging

import dramatiq

from actors.broker import settings
from actors.item_ends import ItemsReleased
from actors.runtime import current_runtime
from app.tasks import (
    BATCHES_QUEUE,
    FINALIZE_BATCH,
    ITEMS_QUEUE,
    RUN_CHUNK,
    SEND_CALLBACK,
    START_BATCH,
)

logger = logging.getLogger(__name__)

#: Control actors are quick Redis work: retry briefly and often rather than Dramatiq's default
#: (20 retries, backoff up to 7 days). The reconciler covers a message whose retries ran out.
CONTROL_OPTIONS = {"max_retries": 10, "min_backoff": 500, "max_backoff": 30_000, "time_limit": 120_000}
#: A chunk runs until its slowest item ends; the item timeout is the real bound, this a backstop.
CHUNK_TIME_LIMIT_MS = int(max(settings.item_timeout_s * 2, 3600) * 1000)


@dramatiq.actor(actor_name=START_BATCH, queue_name=BATCHES_QUEUE, **CONTROL_OPTIONS)
def start_batch(batch_id: str) -> None:
    """Enqueue the batch's first chunks, up to its budget; each finished chunk enqueues the next
    (actors/fanout.py). Run again, it only fills places that are free."""
    current_runtime().feeder.feed(batch_id)


#: Failed runs of a chunk retried before it is dead-lettered (items given back, by a shutting-down
#: worker or while waiting for model capacity, are no failure and always retried).
CHUNK_MAX_RETRIES = 20


def retry_chunk(retries: int, exception: BaseException) -> bool:
    return isinstance(exception, ItemsReleased) or retries < CHUNK_MAX_RETRIES


@dramatiq.actor(actor_name=RUN_CHUNK, queue_name=ITEMS_QUEUE, retry_when=retry_chunk, min_backoff=1000,
                max_backoff=60_000, time_limit=CHUNK_TIME_LIMIT_MS)
async def run_chunk(batch_id: str, start: int, stop: int) -> None:
    await current_runtime().run_chunk(batch_id, start, stop)


@dramatiq.actor(actor_name=FINALIZE_BATCH, queue_name=BATCHES_QUEUE, **CONTROL_OPTIONS)
def finalize_batch(batch_id: str) -> None:
    """Set the terminal status once every item ended; then queue the callback (once)."""
    runtime = current_runtime()
    store = runtime.store
    result, status = store.batches.finalize(batch_id)
    if result in ("finalized", "terminal"):
        store.blobs.drop_requests(batch_id)  # every item has ended: no request is read again
    if result == "finalized":
        counts = (store.batches.get(batch_id) or {}).get("request_counts", {})
        logger.info("Batch %s %s: %s", batch_id, status,
                    ", ".join(f"{count} {name}" for name, count in counts.items() if count and name != "total"))
    if result not in ("finalized", "terminal"):
        return
    # Two finalizes can run for one batch (the last commit's and a chunk's check): the flag is
    # taken atomically so that only one queues the callback. Should this process die between
    # the flag and the message, the reconciler sees a queued callback with no live message.
    if store.callbacks.owed(batch_id) and store.callbacks.claim_queueing(batch_id):
        try:
            runtime.tasks.send(SEND_CALLBACK, batch_id)
        except Exception:
            store.callbacks.unclaim_queueing(batch_id)
            raise
