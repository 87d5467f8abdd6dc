"""Model calls under fleet-wide limits (BATCHLINE_MODEL_LIMITS, app/model_limits.py).

Every attempt of a call to a limited model is admitted through Redis first (app/store/
model_limits.py): it takes a stream lease, renewed while it streams and given back when it ends,
and a place in the model's request and token windows. A call that is not admitted waits, and
while it waits the worker lends its stream slot back (`WAIT_HOOKS`, set per item by the worker)
and shows the item as waiting. A 429 with Retry-After pauses the model for every process; the
attempt that met it waits the pause out at its next admission like any other (retry.py does not
sleep on its own for it).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, Protocol

import redis

from app.model_limits import Bucket, LimitTable
from app.outage import outage
from app.providers.base import ModelRequest, ModelResponse, OnFirstToken, Provider, ProviderError
from app.store.model_limits import Admission, ModelLimitStore

logger = logging.getLogger(__name__)

#: First and longest pause between two admission checks while all of a model's streams are taken
#: (no one can say when one frees): many waiters poll at up to this pace, so a freed stream is
#: taken within about POLL_MAX_S / waiters.
POLL_MIN_S = 0.05
POLL_MAX_S = 1.0
#: Added to an exact wait (a pause, a window), never taken off: nobody asks before the time.
WAKE_JITTER_S = 0.05
#: Between two admission checks while Redis is unreachable.
REDIS_RETRY_S = 1.0
#: Bytes of prompt counted per token, for the estimate made before a call.
BYTES_PER_TOKEN = 4


class Waiting(Protocol):
    def waiting(self) -> AbstractAsyncContextManager[None]:
        """Held while a call waits for capacity: the worker lends the item's stream slot back and
        marks the item as waiting, and takes the slot again on the way out."""
        ...

    def give_up(self, waited_s: float) -> bool:
        """Whether the item should stop waiting and be given back (CapacityRelease), so that
        its worker thread serves other work meanwhile."""
        ...

    def give_up_in(self, waited_s: float) -> float | None:
        """Seconds of waiting left before `give_up` says yes (None: it never will), so that a long
        exact wait (a pause, a window) is cut short to give the item back on time."""
        ...

    def admitted(self) -> None:
        """A call of the item was admitted (a later wait would lose its progress if given up)."""
        ...


class CapacityRelease(Exception):
    """An item waited long enough for a model's capacity: the worker gives it back and retries
    its chunk later, instead of holding a thread while it waits."""


#: The current item's hooks, set by the worker around each item's run (None outside a worker:
#: the synchronous agent route just waits).
WAIT_HOOKS: ContextVar[Waiting | None] = ContextVar("batchline_model_wait_hooks", default=None)


class ModelPaused(ProviderError):
    """A 429 with Retry-After, after which the model was paused for the fleet: the next attempt's
    admission waits the pause out, so the retry loop does not sleep for it itself."""


def estimate_tokens(request: ModelRequest) -> int:
    """Prompt bytes / 4 plus the output the call may produce (`max_tokens`; 0 when unset). Images
    are not counted: their cost in tokens is not their size."""
    size = len(request.system)
    for message in request.messages:
        size += len(message.text) + len(message.reasoning)
        size += sum(len(call.name) + len(call.arguments) for call in message.tool_calls)
    size += sum(len(tool.name) + len(tool.description) + len(json.dumps(tool.parameters)) for tool in request.tools)
    return size // BYTES_PER_TOKEN + (request.max_tokens or 0)


@dataclass
class _Call:
    id: str
    tokens: int
    admitted: bool = False
    renewer: asyncio.Task | None = None
    #: What the call used, from its usage report (None: unknown, the estimate stays counted).
    used: int | None = None


class ModelLimiter:
    """One per process: admits calls to limited models through Redis."""

    def __init__(self, *, table: LimitTable, store: ModelLimitStore, lease_s: float, pause_max_s: float) -> None:
        self.table = table
        self.store = store
        #: A stream lease lapses this long after its last renewal: a dead worker's streams are back then.
        self.lease_s = lease_s
        self.pause_max_s = pause_max_s

    @classmethod
    def from_settings(cls, settings: Any, store: ModelLimitStore) -> ModelLimiter | None:
        table = LimitTable(settings.model_limits)
        if not table:
            return None
        return cls(table=table, store=store, lease_s=settings.item_lease_s, pause_max_s=settings.llm_retry_after_max_s)

    def wrap(self, provider: Provider, *, provider_name: str, base_url: str | None) -> Provider:
        return LimitedProvider(inner=provider, provider_name=provider_name, base_url=base_url, limiter=self)

    @contextlib.asynccontextmanager
    async def admitted(self, bucket: Bucket, request: ModelRequest) -> AsyncIterator[_Call]:
        call = _Call(id=uuid.uuid4().hex, tokens=estimate_tokens(request) if bucket.limit.tokens_per_minute else 0)
        try:
            await self._admit(bucket, call)
            yield call
        finally:
            self._end(bucket, call)

    async def _admit(self, bucket: Bucket, call: _Call) -> None:
        admission = self._try(bucket, call)
        if admission.admitted:
            self._note_admitted()
            return self._hold(bucket, call)
        logger.debug("A call to %s waits for capacity (%s)", bucket.name, admission.reason)
        hooks = WAIT_HOOKS.get()
        async with hooks.waiting() if hooks is not None else contextlib.nullcontext():
            polls, started = 0, time.monotonic()
            while not admission.admitted:
                wait_s = _wait_s(admission, polls)
                if hooks is not None and (left_s := hooks.give_up_in(time.monotonic() - started)) is not None:
                    wait_s = min(wait_s, left_s)
                await asyncio.sleep(wait_s)
                polls += 1
                admission = self._try(bucket, call)
                if not admission.admitted and hooks is not None and hooks.give_up(time.monotonic() - started):
                    raise CapacityRelease(f"{bucket.name}: {admission.reason}")
            # Held (and renewed) before the stream slot is taken back, which may take a while.
            self._note_admitted()
            self._hold(bucket, call)

    @staticmethod
    def _note_admitted() -> None:
        hooks = WAIT_HOOKS.get()
        if hooks is not None:
            hooks.admitted()

    def _try(self, bucket: Bucket, call: _Call) -> Admission:
        try:
            return self.store.acquire(bucket.name, call.id, limit=bucket.limit, tokens=call.tokens,
                                      lease_s=self.lease_s)
        except redis.RedisError as exc:  # limits are a promise to the provider: wait for Redis
            outage.lost(exc)
            return Admission(False, int(REDIS_RETRY_S * 1_000_000), "redis", 0)

    def _hold(self, bucket: Bucket, call: _Call) -> None:
        call.admitted = True
        if bucket.limit.max_streams:
            call.renewer = asyncio.create_task(self._renew(bucket, call.id))

    async def _renew(self, bucket: Bucket, call_id: str) -> None:
        while True:
            await asyncio.sleep(self.lease_s / 3)
            try:
                self.store.renew(bucket.name, [call_id], lease_s=self.lease_s)
            except redis.RedisError as exc:
                outage.lost(exc)

    def _end(self, bucket: Bucket, call: _Call) -> None:
        if call.renewer is not None:
            call.renewer.cancel()
        if not call.admitted:
            return
        try:
            self.store.release(bucket.name, call.id, tokens_used=call.used)
        except redis.RedisError as exc:  # its lease lapses by itself
            outage.lost(exc)

    def pause(self, bucket: Bucket, error: ProviderError) -> ProviderError:
        """Pause the model for the fleet for the error's Retry-After (capped like a retry's wait)."""
        seconds = min(max(0.0, error.retry_after_s or 0.0), self.pause_max_s)
        try:
            resume_us, now_us = self.store.pause(bucket.name, seconds=seconds)
        except redis.RedisError as exc:  # the retry loop waits on its own instead
            outage.lost(exc)
            return error
        logger.info("Model %s paused for the whole fleet for %.1f s: the provider answered 429 with Retry-After",
                    bucket.name, (resume_us - now_us) / 1_000_000)
        return ModelPaused(str(error), status_code=error.status_code, retryable=error.retryable,
                           retry_after_s=error.retry_after_s)


def _wait_s(admission: Admission, polls: int) -> float:
    if admission.wait_us is not None:
        return admission.wait_us / 1_000_000 + random.uniform(0, WAKE_JITTER_S)
    return min(POLL_MAX_S, POLL_MIN_S * 2 ** polls) * random.uniform(0.5, 1.0)


class LimitedProvider:
    """A provider whose calls to limited models are admitted first; other calls pass straight through."""

    def __init__(self, *, inner: Provider, provider_name: str, base_url: str | None, limiter: ModelLimiter) -> None:
        self.inner = inner
        self.provider_name = provider_name
        self.base_url = base_url
        self.limiter = limiter

    async def stream(self, request: ModelRequest, *, on_first_token: OnFirstToken) -> ModelResponse:
        bucket = self.limiter.table.match(f"{self.provider_name}/{request.model}", request.endpoint or self.base_url)
        if bucket is None:
            return await self.inner.stream(request, on_first_token=on_first_token)
        async with self.limiter.admitted(bucket, request) as call:
            try:
                response = await self.inner.stream(request, on_first_token=on_first_token)
            except ProviderError as error:
                if error.status_code == 429 and error.retry_after_s is not None:
                    raise self.limiter.pause(bucket, error) from error
                raise
            if response.prompt_tokens is not None and response.completion_tokens is not None:
                call.used = response.prompt_tokens + response.completion_tokens
            return response
