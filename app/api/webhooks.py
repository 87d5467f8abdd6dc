"""A batch's callback delivery attempts, and the caller's webhook signing secret."""

from __future__ import annotations

from typing import Any

from flask import jsonify
from flask_openapi3 import APIBlueprint, Tag

from app.api.auth import SECURITY, current_tenant
from app.api.batches import batch_or_404
from app.callbacks import tenant_secret
from app.schemas.batches import BatchPath
from app.schemas.common import Error
from app.schemas.responses import URI_TOO_LONG
from app.schemas.webhooks import CallbackAttempts, WebhookSecret
from app.services import services

callback_attempts = APIBlueprint("callback_attempts", __name__, url_prefix="/v1/messages/batches",
                                 abp_tags=[Tag(name="batches")], abp_security=SECURITY,
                                 abp_responses={"401": Error, "414": URI_TOO_LONG,
                                                "422": Error, "429": Error, "503": Error})
webhook_secret = APIBlueprint("webhook_secret", __name__, url_prefix="/v1",
                              abp_tags=[Tag(name="webhooks")], abp_security=SECURITY,
                              abp_responses={"401": Error, "414": URI_TOO_LONG,
                                             "422": Error, "429": Error, "503": Error})


@callback_attempts.get("/<batch_id>/callback-attempts", responses={200: CallbackAttempts, 404: Error})
def list_callback_attempts(path: BatchPath) -> Any:
    """Every delivery attempt of the batch's callback, oldest first (empty before the first, or
    without a callback_url): time, target, status code or error, duration, `webhook-id`."""
    batch_or_404(path.batch_id)  # another tenant's batch is a 404 too
    return jsonify({"attempts": services().store.callbacks.attempt_log(path.batch_id)})


@webhook_secret.get("/webhook-secret", responses={200: WebhookSecret})
def get_webhook_secret() -> Any:
    """The `whsec_` secret of the caller's tenant (never another's), which signs its batches'
    callbacks (Standard Webhooks); generated on first use."""
    svc = services()
    tenant = current_tenant()
    return jsonify({"tenant": tenant, "secret": tenant_secret(svc.store.secrets, tenant,
                                                              configured=svc.settings.webhook_secret)})
