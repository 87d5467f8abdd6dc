"""Model calls through the fleet limiter (app/providers/limits.py) on a real Redis and the fake
OpenAI server: a 429 with Retry-After pauses the model and the retry waits at admission."""

from __future__ import annotations

import asyncio

from app.model_limits import LimitTable, ModelLimit
from app.providers.base import ChatMessage, ModelRequest, Provider, ToolSpec
from app.providers.http import StreamClient
from app.providers.limits import ModelLimiter, estimate_tokens
from app.providers.openai import OpenAIProvider
from app.providers.retry import RetryPolicy, stream_with_retries
from app.store import Store, keys
from tests.fakes.model_servers import FakeOpenAIServer, Reply

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
