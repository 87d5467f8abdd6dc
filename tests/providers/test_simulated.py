"""The simulated model, and the registry that hands out providers by model handle."""

from __future__ import annotations

import asyncio
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from pydantic import SecretStr

from app.providers import (
    SUPPORTED_PROVIDERS,
    ProviderRegistry,
    UnknownProvider,
    make_http_client,
    split_handle,
)
from app.providers.anthropic import AnthropicProvider
from app.providers.base import ChatMessage, ModelRequest, ModelResponse, ProviderError, ToolSpec
from app.providers.openai import OpenAIProvider
from app.providers.simulated import SimulatedProvider
from app.settings import Settings
from tests.fakes.model_servers import FakeOpenAIServer


def request(text: str, **kwargs: object) -> ModelRequest:
    messages = (ChatMessage(role="user", text="earlier"), ChatMessage(role="assistant", text="ok"),
                ChatMessage(role="user", text=text))
    return ModelRequest(model="anything", system="sys", messages=messages, **kwargs)  # type: ignore[arg-type]


def test_given_a_user_message_when_simulating_then_it_echoes_the_last_user_text_after_the_ttft() -> None:
    fired: list[float] = []
    provider = SimulatedProvider(ttft_ms=100, token_ms=20)
    start = time.monotonic()
    response = asyncio.run(provider.stream(request("how are you today"),
                                           on_first_token=lambda: fired.append(time.monotonic() - start)))
    elapsed = time.monotonic() - start
    assert response.text == "echo: how are you today"
    assert (response.finish_reason, response.tool_calls, response.completion_tokens) == ("stop", [], 5)
    assert len(fired) == 1 and 0.09 <= fired[0] < 0.15
    assert elapsed >= 0.1 + 4 * 0.02 - 0.01  # four more words after the first, 20 ms apart


def test_given_tools_when_simulating_then_it_never_calls_them() -> None:
    provider = SimulatedProvider(ttft_ms=0, token_ms=0)
    response = asyncio.run(provider.stream(request("use a tool", tools=(ToolSpec("t"),), tool_choice="required"),
                                           on_first_token=lambda: None))
    assert response.tool_calls == [] and response.text == "echo: use a tool"


def test_given_max_tokens_when_simulating_then_the_echo_is_cut_with_finish_reason_length() -> None:
    provider = SimulatedProvider(ttft_ms=0, token_ms=0)
    response = asyncio.run(provider.stream(request("one two three four", max_tokens=2), on_first_token=lambda: None))
    assert (response.text, response.finish_reason) == ("echo: one ", "length")


def test_given_three_hundred_calls_when_simulating_concurrently_then_they_overlap_on_one_loop() -> None:
    provider = SimulatedProvider(ttft_ms=200, token_ms=10)

    async def many() -> list[ModelResponse]:
        return await asyncio.gather(*(provider.stream(request(f"n{i}"), on_first_token=lambda: None)
                                      for i in range(300)))

    start = time.monotonic()
    responses = asyncio.run(many())
    assert time.monotonic() - start < 1.5  # sequentially this would take 300 * 0.21 s
    assert [r.text for r in responses] == [f"echo: n{i}" for i in range(300)]


def test_given_model_handles_when_split_then_only_the_first_slash_separates_the_provider() -> None:
    assert split_handle("openai/gpt-4o-mini") == ("openai", "gpt-4o-mini")
    assert split_handle("openai/meta-llama/Llama-3.1-8B") == ("openai", "meta-llama/Llama-3.1-8B")
    assert split_handle("simulated/echo") == ("simulated", "echo")


@pytest.mark.parametrize("handle", ["gpt-4o-mini", "letta/letta-free", "openai/", "/gpt-4o", ""])
def test_given_an_unsupported_handle_when_split_then_unknown_provider_explains_the_format(handle: str) -> None:
    with pytest.raises(UnknownProvider, match="must look like '<provider>/<model>'"):
        split_handle(handle)


def test_given_settings_when_the_registry_builds_providers_then_each_is_built_once_and_cached() -> None:
    settings = Settings(openai_api_key=SecretStr("sk-o"), anthropic_api_key=SecretStr("sk-a"),
                        simulated_ttft_ms=0, simulated_token_ms=0)

    async def check() -> None:
        async with make_http_client(settings) as client:
            registry = ProviderRegistry(settings=settings, client=client)
            assert isinstance(registry.get("openai"), OpenAIProvider)
            assert isinstance(registry.get("anthropic"), AnthropicProvider)
            assert isinstance(registry.get("simulated"), SimulatedProvider)
            assert all(registry.get(name) is registry.get(name) for name in SUPPORTED_PROVIDERS)
            with pytest.raises(UnknownProvider):
                registry.get("letta")

    asyncio.run(check())


def test_given_the_registry_openai_provider_when_streaming_then_the_secret_key_is_sent() -> None:
    async def call(base_url: str) -> None:
        settings = Settings(openai_base_url=base_url, openai_api_key=SecretStr("sk-from-settings"))
        async with make_http_client(settings) as client:
            registry = ProviderRegistry(settings=settings, client=client)
            await registry.get("openai").stream(request("hi"), on_first_token=lambda: None)

    with FakeOpenAIServer() as server:
        asyncio.run(call(server.base_url))
        assert server.headers[0]["authorization"] == "Bearer sk-from-settings"


def test_given_settings_when_making_the_http_client_then_it_uses_the_llm_timeouts() -> None:
    client = make_http_client(Settings(llm_connect_timeout_s=3.0, llm_read_timeout_s=120.0))
    # sock_read: the longest silence inside a stream, never a cap on the whole call
    assert (client.timeout.connect, client.timeout.sock_read, client.timeout.total) == (3.0, 120.0, None)


class _Redirector:
    """Answers every POST with a 307 to `location`."""

    def __init__(self, location: str) -> None:
        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                self.send_response(307)
                self.send_header("Location", location)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base_url = f"http://127.0.0.1:{self._server.server_port}/v1"

    def __enter__(self) -> _Redirector:
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()


def test_given_a_redirecting_endpoint_when_streaming_then_the_redirect_is_refused_and_the_key_stays_home() -> None:
    async def call(base_url: str, target: str) -> None:
        settings = Settings(openai_base_url=base_url, openai_api_key=SecretStr("sk-from-settings"),
                            llm_max_attempts=1)
        async with make_http_client(settings) as client:
            provider = ProviderRegistry(settings=settings, client=client).get("openai")
            await provider.stream(request("hi"), on_first_token=lambda: None)

    with FakeOpenAIServer() as target, _Redirector(f"{target.base_url}/chat/completions") as redirector:
        with pytest.raises(ProviderError, match="redirect to"):
            asyncio.run(call(redirector.base_url, target.base_url))
        assert target.requests == []


def test_given_the_shared_http_client_when_300_streams_run_at_once_then_none_waits_for_the_pool() -> None:
    async def many(base_url: str) -> None:
        settings = Settings(openai_base_url=base_url)
        async with make_http_client(settings) as client:
            provider = ProviderRegistry(settings=settings, client=client).get("openai")
            await asyncio.gather(*(provider.stream(request("hi"), on_first_token=lambda: None)
                                   for _ in range(300)))

    # httpx's default pool (100 connections) would queue two thirds of these behind the rest.
    with FakeOpenAIServer(first_token_delay_s=0.5) as server:
        asyncio.run(many(server.base_url))
        assert server.wait_until_idle(5.0)
        assert server.max_open_streams == 300
        assert server.completed_streams == 300


def test_given_a_turn_with_images_when_simulating_then_the_echo_counts_them_without_reading_them() -> None:
    from app.providers.base import ImageInput

    images = (ImageInput(kind="url", url="https://example.com/a.png"), ImageInput(kind="base64", data="AAAA"))
    provider = SimulatedProvider(ttft_ms=0, token_ms=0)
    with_text = ModelRequest(model="m", system="", messages=(ChatMessage(role="user", text="look", images=images),))
    image_only = ModelRequest(model="m", system="", messages=(ChatMessage(role="user", images=images[:1]),))
    assert asyncio.run(provider.stream(with_text, on_first_token=lambda: None)).text == "echo: look [+2 images]"
    assert asyncio.run(provider.stream(image_only, on_first_token=lambda: None)).text == "echo: [+1 image]"
