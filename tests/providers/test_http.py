"""The streaming client over a real local server (the OpenAI fake): long lines, proxies from the
environment."""

from __future__ import annotations

import asyncio
import json

import pytest

from app.providers.base import ChatMessage, ModelRequest, ProviderError
from app.providers.http import StreamClient
from app.providers.openai import OpenAIProvider
from tests.fakes.model_servers import FakeOpenAIServer, Reply

HELLO = ModelRequest(model="m", system="", messages=(ChatMessage(role="user", text="Hi"),))


def _chunk(delta: dict, finish: str | None = None) -> str:
    return json.dumps({"choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})


def test_given_a_data_line_of_a_megabyte_when_streaming_then_it_arrives_whole() -> None:
    arguments = json.dumps({"text": "x" * 1_000_000})
    call = {"tool_calls": [{"index": 0, "id": "call_1", "type": "function",
                            "function": {"name": "save", "arguments": arguments}}]}

    async def go(base_url: str) -> str:
        async with StreamClient(connect_timeout_s=10, read_timeout_s=10) as client:
            provider = OpenAIProvider(client=client, base_url=base_url, api_key=None)
            response = await provider.stream(HELLO, on_first_token=lambda: None)
            return response.tool_calls[0].arguments

    with FakeOpenAIServer(reply=Reply(raw_sse=[_chunk(call), _chunk({}, "tool_calls"), "[DONE]"])) as server:
        assert asyncio.run(go(server.base_url)) == arguments


#: A host that does not resolve: a call to it succeeds only through a proxy.
FAR_AWAY = "http://model.invalid:9/v1"


class _Proxy(FakeOpenAIServer):
    """An HTTP proxy in front of FAR_AWAY: it is asked for the absolute URL, and answers itself."""

    path = f"{FAR_AWAY}/chat/completions"


async def _two_calls(base_url: str) -> list[str]:
    """Two calls through one client: the second reuses the first one's proxy decision."""
    async with StreamClient(connect_timeout_s=5, read_timeout_s=10) as client:
        provider = OpenAIProvider(client=client, base_url=base_url, api_key=None)
        return [(await provider.stream(HELLO, on_first_token=lambda: None)).text for _ in range(2)]


def test_given_http_proxy_in_the_environment_when_streaming_then_the_calls_go_through_it(monkeypatch) -> None:
    with _Proxy() as proxy:
        monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{proxy.port}")
        monkeypatch.delenv("NO_PROXY", raising=False)
        monkeypatch.delenv("no_proxy", raising=False)
        monkeypatch.delenv("http_proxy", raising=False)
        assert asyncio.run(_two_calls(FAR_AWAY)) == ["Hello from the fake model."] * 2
        assert len(proxy.requests) == 2


def test_given_no_proxy_naming_the_host_when_streaming_then_the_proxy_is_bypassed(monkeypatch) -> None:
    with _Proxy() as proxy:
        monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{proxy.port}")
        monkeypatch.setenv("NO_PROXY", "model.invalid")
        monkeypatch.delenv("http_proxy", raising=False)
        with pytest.raises(ProviderError, match="connection failed"):
            asyncio.run(_two_calls(FAR_AWAY))
        assert proxy.requests == []
