"""The batch-end callback: POST the payload of SPEC section 4, signed per Standard Webhooks,
retried with backoff by Dramatiq until a 2xx or attempts run out. Each attempt is recorded: the
latest on the batch (callback_sent_at, callback_status_code, callback_error), and every one in
the batch's list of attempts (GET /v1/messages/batches/{id}/callback-attempts)."""

from __future__ import annotations

import logging

import dramatiq
import httpx

from actors.broker import settings
from actors.runtime import current_runtime
from app.callbacks import deliver, payload, shown_url, tenant_secret
from app.store import Store
from app.tasks import CALLBACKS_QUEUE, SEND_CALLBACK
from app.tenancy import owner_of

logger = logging.getLogger(__name__)

#: Backoff between attempts: 1 s doubling up to 5 min (with Dramatiq's jitter).
CALLBACK_MIN_BACKOFF_MS = 1000
CALLBACK_MAX_BACKOFF_MS = 300_000


class CallbackFailed(dramatiq.Retry):
    """One delivery attempt failed; Dramatiq retries the actor with backoff (a Retry: an
    expected outcome, logged as one line rather than a traceback)."""


def webhook_secret(store: Store, tenant: str) -> str:
    """The tenant's signing secret (BATCHLINE_WEBHOOK_SECRET is tenant "default"'s when set)."""
    return tenant_secret(store.secrets, tenant, configured=settings.webhook_secret)


# Attempts are counted in Redis (a redelivered or re-queued message does not start the count
# again); Dramatiq's retries only pace them.
@dramatiq.actor(actor_name=SEND_CALLBACK, queue_name=CALLBACKS_QUEUE,
                max_retries=max(0, settings.callback_max_attempts - 1),
                min_backoff=CALLBACK_MIN_BACKOFF_MS, max_backoff=CALLBACK_MAX_BACKOFF_MS,
                time_limit=int((settings.callback_timeout_s + 30) * 1000))
def send_callback(batch_id: str) -> None:
    store = current_runtime().store
    batch = store.batches.get(batch_id)
    if batch is None or batch["callback_url"] is None:
        return
    token = store.callbacks.lock(batch_id, ttl_s=settings.callback_timeout_s + 10)
    if token is None:
        return  # another delivery is under way; if it fails, its own message is retried
    try:
        attempts = store.callbacks.attempts(batch_id)
        if not store.callbacks.owed(batch_id) or attempts >= settings.callback_max_attempts:
            return
        webhook_id = f"msg_{batch_id}"  # the same on every attempt, so a receiver can drop repeats
        with httpx.Client(timeout=settings.callback_timeout_s) as client:
            result = deliver(batch["callback_url"], payload(batch), webhook_id=webhook_id,
                             secret=webhook_secret(store, owner_of(batch.get("created_by_id"))), client=client,
                             allow_private=settings.callback_allow_private)
        attempts = store.callbacks.record_attempt(
            batch_id, sent_us=result.sent_us, status_code=result.status_code, error=result.error,
            delivered=result.delivered, url=shown_url(batch["callback_url"]), address=result.address,
            duration_ms=result.duration_ms, webhook_id=webhook_id, keep=settings.callback_max_attempts)
    finally:
        store.callbacks.unlock(batch_id, token=token)
    if result.delivered:
        return
    if attempts >= settings.callback_max_attempts:
        logger.warning("Callback of batch %s failed: %s; giving up after %d attempts", batch_id, result.error,
                       attempts)
        return
    logger.warning("Callback of batch %s failed: %s", batch_id, result.error)
    raise CallbackFailed(result.error)
