"""Model providers: which ones exist, how a model handle names one, and the per-process registry."""

from __future__ import annotations

from typing import Any

import httpx

from app.providers.anthropic import AnthropicProvider
from app.providers.base import Provider
from app.providers.limits import ModelLimiter
from app.providers.openai import OpenAIProvider
from app.providers.simulated import SimulatedProvider

SUPPORTED_PROVIDERS = ("openai", "anthropic", "simulated")


class UnknownProvider(ValueError):
    """A model handle or provider name that Batchline cannot serve."""


def split_handle(handle: str) -> tuple[str, str]:
    """Split a model handle: `openai/gpt-4o-mini` -> ("openai", "gpt-4o-mini"). Only the first
    "/" splits, since model names may contain slashes themselves (`openai/meta-llama/Llama-3-8B`)."""
    provider, sep, model = handle.partition("/")
    if not sep or provider not in SUPPORTED_PROVIDERS or not model.strip():
        raise UnknownProvider(
            f"Model handle {handle!r} is not supported: it must look like '<provider>/<model>' "
            f"with provider one of {', '.join(SUPPORTED_PROVIDERS)}."
        )
    return provider, model


def make_http_client(settings: Any) -> httpx.AsyncClient:
    """The one AsyncClient a process shares for all model calls."""
    timeout = httpx.Timeout(
        connect=settings.llm_connect_timeout_s,
        # Read is the longest silence inside a stream, not the whole call's duration.
        read=settings.llm_read_timeout_s,
        write=settings.llm_connect_timeout_s,
        pool=settings.llm_connect_timeout_s,
    )
    return httpx.AsyncClient(
        timeout=timeout,
        # No cap on open connections: the worker limits concurrent streams itself
        # (worker_max_streams), and a pool cap here would only queue streams behind each other.
        # No idle keep-alive connections either: httpcore 1.x hands one idle connection to every
        # queued request and lets the losers retry (encode/httpcore#1035), so a burst of
        # hundreds of calls over a warm pool (say, retries after a 429 storm) takes seconds of
        # CPU; measured here, 500 such calls took 8-11 s with keep-alive and 1.3-3 s without.
        # Streams are cut at [DONE] and closed anyway, so reuse would gain little.
        limits=httpx.Limits(max_connections=None, max_keepalive_connections=0),
        # A redirected POST would carry the API key to wherever it points.
        follow_redirects=False,
    )


class ProviderRegistry:
    """Builds each provider on first use and keeps it for the process's lifetime. With a limiter
    (BATCHLINE_MODEL_LIMITS), calls to limited models are admitted through it first."""

    def __init__(self, *, settings: Any, client: httpx.AsyncClient, limiter: ModelLimiter | None = None) -> None:
        self._settings = settings
        self._client = client
        self._limiter = limiter
        self._providers: dict[str, Provider] = {}

    def get(self, provider_name: str) -> Provider:
        provider = self._providers.get(provider_name)
        if provider is None:
            provider = self._build(provider_name)
            if self._limiter is not None:
                base_url = {"openai": self._settings.openai_base_url,
                            "anthropic": self._settings.anthropic_base_url}.get(provider_name)
                provider = self._limiter.wrap(provider, provider_name=provider_name, base_url=base_url)
            self._providers[provider_name] = provider
        return provider

    def _build(self, name: str) -> Provider:
        s = self._settings
        # Keys stay SecretStr here; the providers unwrap them only while building headers.
        if name == "openai":
            return OpenAIProvider(client=self._client, base_url=s.openai_base_url, api_key=s.openai_api_key)
        if name == "anthropic":
            return AnthropicProvider(client=self._client, base_url=s.anthropic_base_url,
                                     api_key=s.anthropic_api_key)
        if name == "simulated":
            return SimulatedProvider(ttft_ms=s.simulated_ttft_ms, token_ms=s.simulated_token_ms)
        raise UnknownProvider(
            f"Provider {name!r} is not supported; use one of {', '.join(SUPPORTED_PROVIDERS)}."
        )
