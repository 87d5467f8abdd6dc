"""Model calls through the fleet limiter (app/providers/limits.py) on a real Redis and the fake
OpenAI server: a 429 with Retry-After pauses the model and the retry waits at admission."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import socket
import threading
import time
from urllib.parse import urlparse

from app.model_limits import LimitTable, ModelLimit
from app.providers.base import ChatMessage, ModelRequest, Provider, ToolSpec
from app.providers.http import StreamClient
from app.providers.limits import ModelLimiter, estimate_tokens
from app.providers.openai import OpenAIProvider
from app.providers.retry import RetryPolicy, stream_with_retries
from app.store import Store, connect, keys
from tests.fakes.model_servers import FakeOpenAIServer, Reply

BUCKET = "openai/gpt-4o-mini"
HELLO = ModelRequest(model="gpt-4o-mini", system="", messages=(ChatMessage(role="user", text="Hi"),))


def limited_openai(store: Store, limits: dict[str, ModelLimit], http: StreamClient, base_url: str) -> Provider:
    """An OpenAI provider on the fake server, wrapped by a fleet limiter with `limits`."""
    limiter = ModelLimiter(table=LimitTable(limits), store=store.model_limits, lease_s=30, pause_max_s=60)
    return limiter.wrap(OpenAIProvider(client=http, base_url=base_url, api_key="sk-x"), provider_name="openai",
                        base_url=base_url)


def test_given_a_429_with_retry_after_when_retried_then_the_model_is_paused_in_redis_and_the_retry_waits_for_it(store):
    replies = iter([Reply(status=429, retry_after="1")])
    waits: list[float] = []

    async def record(seconds: float) -> None:
        waits.append(seconds)

    async def go() -> str:
        async with StreamClient(connect_timeout_s=10, read_timeout_s=10) as http:
            provider = limited_openai(store, {"*": ModelLimit()}, http, server.base_url)
            response = await stream_with_retries(provider, HELLO, on_first_token=lambda: None,
                                                 policy=RetryPolicy(max_attempts=2), sleep=record)
            return response.text

    with FakeOpenAIServer(script=lambda body, n: next(replies, None)) as server:
        text = asyncio.run(go())
        times = server.request_times
    assert text == "Hello from the fake model."
    assert waits == []  # the retry loop did not sleep on its own: admission waited out the pause
    assert times[1] - times[0] >= 1.0
    assert store.client.exists(keys.model_limit("openai/gpt-4o-mini", "pause")) == 0  # expired with the pause


def test_given_a_token_limit_when_a_call_ends_then_its_estimate_is_replaced_by_the_usage_it_reported(store):
    async def go() -> None:
        async with StreamClient(connect_timeout_s=10, read_timeout_s=10) as http:
            provider = limited_openai(store, {"openai/gpt-4o-mini": ModelLimit(tokens_per_minute=10_000)}, http,
                                      server.base_url)
            await provider.stream(ModelRequest(model="gpt-4o-mini", system="", max_tokens=500,
                                               messages=HELLO.messages), on_first_token=lambda: None)

    with FakeOpenAIServer() as server:
        asyncio.run(go())
    counted = int(store.client.hget(keys.model_limit("openai/gpt-4o-mini", "tokens"), "sum"))
    assert 0 < counted < 500  # the usage (prompt + completion), not the estimate with max_tokens


def test_given_a_request_when_estimated_then_prompt_bytes_over_4_plus_max_output_are_counted():
    request = ModelRequest(model="m", system="s" * 400, messages=(ChatMessage(role="user", text="u" * 400),),
                           tools=(ToolSpec(name="t", parameters={}),), max_tokens=100)
    assert estimate_tokens(request) == (400 + 400 + 1 + 2) // 4 + 100


def test_given_a_model_without_a_limit_when_called_then_redis_is_not_asked(store):
    async def go() -> None:
        async with StreamClient(connect_timeout_s=10, read_timeout_s=10) as http:
            provider = limited_openai(store, {"anthropic/*": ModelLimit(max_streams=1)}, http, server.base_url)
            await provider.stream(HELLO, on_first_token=lambda: None)

    with FakeOpenAIServer() as server:
        before = store.client.info("stats")["total_commands_processed"]
        asyncio.run(go())
    assert store.client.info("stats")["total_commands_processed"] == before + 1  # the INFO call itself


class _ReplyDropper:
    """A TCP proxy to Redis that, once armed, cuts the client's connection instead of passing on
    the next reply: the command ran in Redis, but the client never hears so and sends it again."""

    def __init__(self, redis_url: str) -> None:
        address = urlparse(redis_url)
        self.upstream = (address.hostname, address.port)
        self.server = socket.create_server(("127.0.0.1", 0))
        self.url = f"redis://127.0.0.1:{self.server.getsockname()[1]}"
        self.armed = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            client, _ = self.server.accept()
            upstream = socket.create_connection(self.upstream)
            threading.Thread(target=self._pump, args=(client, upstream, False), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, True), daemon=True).start()

    def _pump(self, source: socket.socket, target: socket.socket, replies: bool) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                if replies and self.armed.is_set():
                    self.armed.clear()
                    break
                target.sendall(data)
        for end in (source, target):
            with contextlib.suppress(OSError):
                end.shutdown(socket.SHUT_RDWR)



def test_given_an_admission_whose_reply_is_lost_when_the_limiter_asks_again_then_its_tokens_count_once(
        store, redis_url):
    proxy = _ReplyDropper(redis_url)
    through_proxy = Store(client=connect(proxy.url))
    limit = ModelLimit(tokens_per_minute=1000)
    request = dataclasses.replace(HELLO, max_tokens=300)  # estimated at 300 tokens
    assert through_proxy.model_limits.acquire("warm-up", "w", limit=limit, tokens=1, lease_s=30).admitted

    async def go() -> None:
        async with StreamClient(connect_timeout_s=10, read_timeout_s=10) as http:
            provider = limited_openai(through_proxy, {BUCKET: limit}, http, server.base_url)
            proxy.armed.set()  # the admission runs in Redis, its reply is lost, the limiter asks again
            await provider.stream(request, on_first_token=lambda: None)

    with FakeOpenAIServer() as server:
        asyncio.run(go())

    assert not proxy.armed.is_set()
    counted = store.client.hgetall(keys.model_limit(BUCKET, "tokens"))
    used = [int(tokens) for call, tokens in counted.items() if call != "sum"]
    assert len(used) == 1 and used[0] < 300  # the usage the fake reported replaced the estimate
    assert int(counted["sum"]) == used[0], "the window counts tokens no call used, for as long as the model is busy"


def test_given_the_only_stream_admitted_with_its_reply_lost_when_the_limiter_asks_again_then_the_call_does_not_wait_for_itself(  # noqa: E501
        store, redis_url):
    proxy = _ReplyDropper(redis_url)
    through_proxy = Store(client=connect(proxy.url))
    limit = ModelLimit(max_streams=1)
    assert through_proxy.model_limits.acquire("warm-up", "w", limit=limit, tokens=0, lease_s=30).admitted

    async def go() -> float:
        async with StreamClient(connect_timeout_s=10, read_timeout_s=10) as http:
            provider = limited_openai(through_proxy, {BUCKET: limit}, http, server.base_url)  # 30 s leases
            proxy.armed.set()
            started = time.monotonic()
            await provider.stream(HELLO, on_first_token=lambda: None)
            return time.monotonic() - started

    with FakeOpenAIServer() as server:
        took_s = asyncio.run(go())

    assert not proxy.armed.is_set()
    assert took_s < 10, f"the call waited {took_s:.1f} s for the stream its own lost admission held"
    assert store.client.zcard(keys.model_limit(BUCKET, "streams")) == 0
