"""Model providers: which ones exist, how a model handle names one, and the per-process registry."""

from __future__ import annotations

from typing import Any

from app.providers.anthropic import AnthropicProvider
from app.providers.base import Provider
from app.providers.http import StreamClient
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


def make_http_client(settings: Any) -> StreamClient:
    """The one client a process shares for all model calls (aiohttp: see app/providers/http.py)."""
    return StreamClient(connect_timeout_s=settings.llm_connect_timeout_s, read_timeout_s=settings.llm_read_timeout_s)


class ProviderRegistry:
    """Builds each provider on first use and keeps it for the process's lifetime. With a limiter
    (BATCHLINE_MODEL_LIMITS), calls to limited models are admitted through it first."""

    def __init__(self, *, settings: Any, client: StreamClient, limiter: ModelLimiter | None = None) -> None:
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
