"""Sanity checks of the fake model servers themselves, with plain httpx and sockets."""

from __future__ import annotations

import asyncio
import json
import socket
import time

import httpx

from tests.fakes.model_servers import FakeAnthropicServer, FakeOpenAIServer, Reply


def sse_data(text: str) -> list[str]:
    return [line.removeprefix("data: ") for line in text.splitlines() if line.startswith("data: ")]


def test_given_an_openai_fake_when_posting_then_it_streams_chunks_ending_in_done() -> None:
    with FakeOpenAIServer() as server:
        response = httpx.post(f"{server.base_url}/chat/completions", json={"model": "m", "messages": []})
        assert server.wait_until_idle(5.0)
        assert server.requests == [{"model": "m", "messages": []}]
        assert server.completed_streams == 1 and server.open_streams == 0
    data = sse_data(response.text)
    assert response.headers["content-type"] == "text/event-stream"
    assert data[-1] == "[DONE]"
    words = [json.loads(d)["choices"][0]["delta"].get("content") for d in data[1:-2]]
    assert "".join(w for w in words if w) == "Hello from the fake model."


def test_given_an_anthropic_fake_when_posting_then_events_follow_the_messages_order() -> None:
    with FakeAnthropicServer(reply=Reply(text="Hi there", tool_calls=[("f", "{}")])) as server:
        response = httpx.post(f"{server.base_url}/v1/messages", json={"model": "m", "messages": []})
    kinds = [json.loads(d)["type"] for d in sse_data(response.text)]
    assert kinds[:3] == ["message_start", "ping", "content_block_start"]
    assert kinds[-2:] == ["message_delta", "message_stop"]
    assert kinds.count("content_block_start") == kinds.count("content_block_stop") == 2


def test_given_an_error_reply_when_posting_then_the_status_json_body_and_retry_after_are_sent() -> None:
    with FakeOpenAIServer(reply=Reply(status=429, retry_after="5", error_message="slow down")) as server:
        response = httpx.post(f"{server.base_url}/chat/completions", json={})
    assert response.status_code == 429 and response.headers["retry-after"] == "5"
    assert response.json()["error"]["message"] == "slow down"


def test_given_a_script_when_requests_arrive_then_it_sees_each_body_and_its_index() -> None:
    seen: list[tuple[dict, int]] = []

    def script(body: dict, n: int) -> Reply | None:
        seen.append((body, n))
        return Reply(status=500) if n == 0 else None

    with FakeOpenAIServer() as server:
        server.script = script
        statuses = [httpx.post(f"{server.base_url}/chat/completions", json={"i": i}).status_code for i in range(2)]
    assert statuses == [500, 200]
    assert seen == [({"i": 0}, 0), ({"i": 1}, 1)]


def test_given_a_client_that_hangs_up_during_the_first_token_delay_then_the_server_notices_fast() -> None:
    with FakeAnthropicServer(first_token_delay_s=30.0) as server:
        sock = socket.create_connection(("127.0.0.1", server.port))
        body = b"{}"
        sock.sendall(b"POST /v1/messages HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n" + body)
        assert server.wait_for_open_streams(1, 5.0)
        sock.close()
        closed_at = time.monotonic()
        while server.streams_closed_by_client == 0 and time.monotonic() - closed_at < 1.0:
            time.sleep(0.01)
        assert server.streams_closed_by_client == 1
        assert time.monotonic() - closed_at < 0.5
        assert server.open_streams == 0


def test_given_300_concurrent_clients_when_streaming_then_the_fake_holds_them_all_open() -> None:
    async def many(base_url: str) -> list[int]:
        limits = httpx.Limits(max_connections=None, max_keepalive_connections=0)
        async with httpx.AsyncClient(limits=limits, timeout=30) as client:
            async def one() -> int:
                response = await client.post(f"{base_url}/chat/completions", json={})
                return response.status_code
            return await asyncio.gather(*(one() for _ in range(300)))

    with FakeOpenAIServer(first_token_delay_s=0.5) as server:
        assert asyncio.run(many(server.base_url)) == [200] * 300
        assert server.wait_until_idle(5.0)
        assert server.max_open_streams == 300 and server.completed_streams == 300
