"""The batch pipeline: start (fan out in chunks) -> run_chunk (items run concurrently on the
event loop) -> finalize (terminal status, then the callback); expire stops a batch whose
completion window passed. Batch completion is decided by Batchline's own counters in Redis,
never by Dramatiq group callbacks (which miss children that fail for good)."""

from __future__ import annotations

import logging

import dramatiq

from actors.broker import settings
from actors.runtime import current_runtime
from app.tasks import (
    BATCHES_QUEUE,
    EXPIRE_BATCH,
    FINALIZE_BATCH,
    ITEMS_QUEUE,
    RUN_CHUNK,
    SEND_CALLBACK,
    START_BATCH,
    TaskQueue,
)
from app.vocabulary import BatchStatus

logger = logging.getLogger(__name__)

#: Control actors are quick Redis work: retry briefly and often rather than Dramatiq's default
#: (20 retries, backoff up to 7 days).
CONTROL_OPTIONS = {"max_retries": 10, "min_backoff": 500, "max_backoff": 30_000, "time_limit": 120_000}
#: A chunk runs until its slowest item ends; the item timeout is the real bound, this a backstop.
CHUNK_TIME_LIMIT_MS = int(max(settings.item_timeout_s * 2, 3600) * 1000)


def _tasks() -> TaskQueue:
    return current_runtime().tasks


@dramatiq.actor(actor_name=START_BATCH, queue_name=BATCHES_QUEUE, **CONTROL_OPTIONS)
def start_batch(batch_id: str) -> None:
    """Enqueue one run_chunk message per chunk of items, resuming where a crashed run stopped."""
    batches = current_runtime().store.batches
    fanout = batches.fanout(batch_id)
    if fanout is None:
        return
    if fanout.expires_in_ms is not None:
        _tasks().send(EXPIRE_BATCH, batch_id, delay_ms=fanout.expires_in_ms)
        batches.mark_expiry_scheduled(batch_id)
    chunk_start = fanout.next_start
    while chunk_start < fanout.total:
        stop = min(chunk_start + settings.chunk_size, fanout.total) - 1
        _tasks().send(RUN_CHUNK, batch_id, chunk_start, stop)
        chunk_start = stop + 1
        batches.advance_fanout(batch_id, next_start=chunk_start)


@dramatiq.actor(actor_name=RUN_CHUNK, queue_name=ITEMS_QUEUE, max_retries=20, min_backoff=1000,
                max_backoff=60_000, time_limit=CHUNK_TIME_LIMIT_MS)
async def run_chunk(batch_id: str, start: int, stop: int) -> None:
    await current_runtime().run_chunk(batch_id, start, stop)


@dramatiq.actor(actor_name=FINALIZE_BATCH, queue_name=BATCHES_QUEUE, **CONTROL_OPTIONS)
def finalize_batch(batch_id: str) -> None:
    """Set the terminal status once every item ended; then queue the callback (once)."""
    batches = current_runtime().store.batches
    result, status = batches.finalize(batch_id)
    if result == "finalized":
        counts = (batches.get(batch_id) or {}).get("request_counts", {})
        logger.info("Batch %s %s: %s", batch_id, status,
                    ", ".join(f"{count} {name}" for name, count in counts.items() if count and name != "total"))
    if result not in ("finalized", "terminal"):
        return
    # Two finalizes can run for one batch (the last commit's and a chunk's check): the flag is
    # taken atomically so that only one queues the callback.
    if batches.callback_owed(batch_id) and batches.claim_callback(batch_id):
        try:
            _tasks().send(SEND_CALLBACK, batch_id)
        except Exception:
            batches.unclaim_callback(batch_id)
            raise


@dramatiq.actor(actor_name=EXPIRE_BATCH, queue_name=BATCHES_QUEUE, **CONTROL_OPTIONS)
def expire_batch(batch_id: str) -> None:
    """The completion window passed: unfinished items expire, running streams are closed."""
    stopped = current_runtime().store.batches.stop(batch_id, status=BatchStatus.EXPIRED)
    if stopped.result == "stopped":
        logger.info("Batch %s expired with %d items still running", batch_id, stopped.running)
    if stopped.needs_finalize:
        _tasks().send(FINALIZE_BATCH, batch_id)
