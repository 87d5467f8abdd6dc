"""stream_with_retries over a real OpenAIProvider and fake server; waits are recorded, not slept."""

from __future__ import annotations

import asyncio
import email.utils
import time

import httpx
import pytest

from app.providers.base import ChatMessage, InvalidResponseError, ModelRequest, ModelResponse, ProviderError
from app.providers.http import StreamClient
from app.providers.openai import OpenAIProvider
from app.providers.retry import RetryPolicy, stream_with_retries
from app.providers.sse import parse_retry_after
from app.settings import Settings
from tests.fakes.model_servers import FakeOpenAIServer, Reply

HELLO = ModelRequest(model="gpt-4o-mini", system="", messages=(ChatMessage(role="user", text="Hi"),))
POLICY = RetryPolicy(max_attempts=4, backoff_base_s=1.0, backoff_max_s=30.0, retry_after_max_s=60.0)


class Run:
    """One retried call: what was waited, and how often on_first_token fired."""

    def __init__(self) -> None:
        self.waits: list[float] = []
        self.first_tokens = 0

    async def _sleep(self, seconds: float) -> None:
        self.waits.append(seconds)

    def _first_token(self) -> None:
        self.first_tokens += 1

    def __call__(self, server: FakeOpenAIServer, policy: RetryPolicy = POLICY,
                 jitter: float = 1.0) -> ModelResponse:
        async def go() -> ModelResponse:
            async with StreamClient(connect_timeout_s=10, read_timeout_s=10) as client:
                provider = OpenAIProvider(client=client, base_url=server.base_url, api_key="sk-x")
                return await stream_with_retries(provider, HELLO, on_first_token=self._first_token,
                                                 policy=policy, sleep=self._sleep, jitter=lambda: jitter)

        return asyncio.run(go())


def failing(times: int, reply: Reply):
    return lambda body, n: reply if n < times else None


def test_given_a_429_with_retry_after_when_streaming_then_the_wait_honours_it() -> None:
    run = Run()
    with FakeOpenAIServer(script=failing(1, Reply(status=429, retry_after="7"))) as server:
        response = run(server)
        assert len(server.requests) == 2
    assert run.waits == [7.0]
    assert response.text == "Hello from the fake model."


def test_given_a_retry_after_beyond_the_cap_when_streaming_then_the_wait_is_capped() -> None:
    run = Run()
    policy = RetryPolicy(max_attempts=2, backoff_base_s=1.0, backoff_max_s=30.0, retry_after_max_s=60.0)
    with FakeOpenAIServer(script=failing(1, Reply(status=429, retry_after="3600"))) as server:
        run(server, policy)
    assert run.waits == [60.0]


def test_given_two_500s_when_streaming_then_it_retries_with_exponential_backoff_and_succeeds() -> None:
    run = Run()
    with FakeOpenAIServer(script=failing(2, Reply(status=500))) as server:
        response = run(server, jitter=1.0)
        assert len(server.requests) == 3
    assert run.waits == [1.0, 2.0]
    assert response.finish_reason == "stop"


def test_given_jitter_when_backing_off_then_each_wait_is_a_fraction_of_a_capped_ceiling() -> None:
    run = Run()
    policy = RetryPolicy(max_attempts=5, backoff_base_s=2.0, backoff_max_s=5.0, retry_after_max_s=60.0)
    with FakeOpenAIServer(script=failing(4, Reply(status=503))) as server:
        run(server, policy, jitter=0.5)
    assert run.waits == [1.0, 2.0, 2.5, 2.5]


def test_given_a_400_when_streaming_then_it_is_not_retried() -> None:
    run = Run()
    with FakeOpenAIServer(reply=Reply(status=400, error_message="bad model")) as server:
        with pytest.raises(ProviderError, match="bad model") as caught:
            run(server)
        assert len(server.requests) == 1
    assert run.waits == [] and caught.value.status_code == 400


def test_given_only_503s_when_retries_run_out_then_the_error_says_how_many_attempts_were_made() -> None:
    run = Run()
    with FakeOpenAIServer(reply=Reply(status=503, error_message="Service unavailable")) as server:
        with pytest.raises(ProviderError) as caught:
            run(server)
        assert len(server.requests) == 4
    assert str(caught.value) == "OpenAI returned 503: Service unavailable (gave up after 4 attempts)"
    assert caught.value.status_code == 503
    assert len(run.waits) == 3


def test_given_an_empty_stream_when_streaming_then_the_invalid_response_is_not_retried() -> None:
    run = Run()
    with FakeOpenAIServer(reply=Reply(text="")) as server:
        with pytest.raises(InvalidResponseError):
            run(server)
        assert len(server.requests) == 1


def test_given_a_drop_after_the_first_token_when_retried_then_on_first_token_fired_only_once() -> None:
    run = Run()
    with FakeOpenAIServer(script=failing(1, Reply(drop_after_tokens=2))) as server:
        response = run(server)
        assert len(server.requests) == 2
    assert run.first_tokens == 1
    assert response.text == "Hello from the fake model."


def test_given_retry_after_headers_when_parsed_then_ms_seconds_and_http_dates_are_understood() -> None:
    now = time.time()
    in_ten = email.utils.formatdate(now + 10, usegmt=True)
    assert parse_retry_after(httpx.Headers({"retry-after-ms": "1500", "retry-after": "9"})) == 1.5
    assert parse_retry_after(httpx.Headers({"retry-after": "2.5"})) == 2.5
    assert parse_retry_after(httpx.Headers({"retry-after": in_ten}), now=now) == pytest.approx(10, abs=1)
    assert parse_retry_after(httpx.Headers({"retry-after": "soon"})) is None
    assert parse_retry_after(httpx.Headers({})) is None


def test_given_settings_when_building_the_policy_then_it_takes_the_llm_retry_fields() -> None:
    settings = Settings(llm_max_attempts=6, llm_backoff_base_s=0.5, llm_backoff_max_s=8.0,
                        llm_retry_after_max_s=20.0)
    assert RetryPolicy.from_settings(settings) == RetryPolicy(6, 0.5, 8.0, 20.0)
