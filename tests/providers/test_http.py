"""The streaming client's line splitting, over a real local server (the OpenAI fake)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

from app.providers.base import ChatMessage, ModelRequest
from app.providers.http import StreamClient, iter_lines
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


def test_given_lf_crlf_and_cr_line_ends_split_anywhere_when_read_then_each_line_comes_once_without_its_end() -> None:
    body = "data: a\r\n\r\ndata: b\n\ndata: c\r\rdata: é\r\n"
    raw = body.encode()

    async def lines(size: int) -> list[str]:
        async def chunks() -> AsyncIterator[bytes]:
            for start in range(0, len(raw), size):
                yield raw[start:start + size]

        return [line async for line in iter_lines(chunks())]

    expected = ["data: a", "", "data: b", "", "data: c", "", "data: é"]
    for size in range(1, len(raw) + 1):
        assert asyncio.run(lines(size)) == expected, size
