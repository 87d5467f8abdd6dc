"""Callback delivery attempts and the webhook signing secret."""

from __future__ import annotations

from pydantic import BaseModel, Field


class CallbackAttempt(BaseModel):
    attempt: int = Field(description="1 for the first delivery attempt, then 2, 3...")
    sent_at: str = Field(description="When the attempt started (ISO 8601, UTC).")
    url: str | None = Field(description="The callback URL, without any user or password in it.")
    address: str | None = Field(
        description="The IP address the request went to; null when none answered, or through a proxy.")
    status_code: int | None = Field(description="The HTTP status the endpoint answered; null when none did.")
    error: str | None = Field(description="Why the attempt failed (never the response body); null on a 2xx.")
    duration_ms: int | None = Field(description="From the start of the attempt (name resolution included) to its end.")
    webhook_id: str | None = Field(description="The `webhook-id` header sent: the same on every attempt of a batch.")


class CallbackAttempts(BaseModel):
    attempts: list[CallbackAttempt] = Field(description="Oldest first.")


class WebhookSecret(BaseModel):
    tenant: str
    secret: str = Field(description="`whsec_` and the base64 key that signs this tenant's callbacks.")
