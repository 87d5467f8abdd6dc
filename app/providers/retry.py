"""Retrying one model call on transient provider failures (429, 5xx, network)."""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from app.providers.base import FirstToken, ModelRequest, ModelResponse, OnFirstToken, Provider, ProviderError
from app.providers.limits import ModelPaused

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 4
    backoff_base_s: float = 1.0
    backoff_max_s: float = 30.0
    retry_after_max_s: float = 60.0

    @classmethod
    def from_settings(cls, settings: Any) -> RetryPolicy:
        return cls(
            max_attempts=settings.llm_max_attempts,
            backoff_base_s=settings.llm_backoff_base_s,
            backoff_max_s=settings.llm_backoff_max_s,
            retry_after_max_s=settings.llm_retry_after_max_s,
        )

    def wait_s(self, attempt: int, error: ProviderError,
               jitter: Callable[[], float] = random.random) -> float:
        """Seconds to wait after failed attempt number `attempt` (1-based)."""
        if error.retry_after_s is not None:
            return min(max(0.0, error.retry_after_s), self.retry_after_max_s)
        # Full jitter: thousands of items hitting the same 5xx must not come back in lockstep.
        ceiling = min(self.backoff_max_s, self.backoff_base_s * 2 ** (attempt - 1))
        return max(0.0, ceiling * jitter())


async def stream_with_retries(
    provider: Provider,
    request: ModelRequest,
    *,
    on_first_token: OnFirstToken,
    policy: RetryPolicy,
    sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
    jitter: Callable[[], float] = random.random,
) -> ModelResponse:
    """Stream `request`, retrying retryable ProviderErrors; InvalidResponseError and
    non-retryable errors propagate at once. `on_first_token` fires at most once overall."""
    first_token_once = FirstToken(on_first_token)
    attempts = max(1, policy.max_attempts)
    for attempt in range(1, attempts + 1):
        try:
            return await provider.stream(request, on_first_token=first_token_once)
        except ProviderError as error:
            if not error.retryable:
                raise
            if attempt == attempts:
                raise ProviderError(
                    f"{error} (gave up after {attempts} attempt{'s' if attempts != 1 else ''})",
                    status_code=error.status_code, retryable=True, retry_after_s=error.retry_after_s,
                ) from error
            if isinstance(error, ModelPaused):
                # The next attempt's admission waits the fleet's pause out, holding no stream slot.
                log.info("model call attempt %d/%d failed (%s); retrying when the model's pause ends",
                         attempt, attempts, error)
                continue
            wait = policy.wait_s(attempt, error, jitter)
            log.info("model call attempt %d/%d failed (%s); retrying in %.2fs",
                     attempt, attempts, error, wait)
            await sleep(wait)
    raise AssertionError("unreachable")  # the loop either returns or raises
