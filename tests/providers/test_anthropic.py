"""AnthropicProvider against a real local server speaking the Messages streaming format."""

from __future__ import annotations

import asyncio
import json
import time

import pytest

from app.providers.anthropic import AnthropicProvider, messages_url
from app.providers.base import (
    ChatMessage,
    ImageInput,
    InvalidResponseError,
    ModelRequest,
    ModelResponse,
    ProviderError,
    ToolCall,
    ToolSpec,
)
from app.providers.http import StreamClient
from tests.fakes.model_servers import FakeAnthropicServer, Reply

KEY = "sk-ant-test-secret-456"
HELLO = ModelRequest(model="claude-sonnet-4", system="Be brief.", messages=(ChatMessage(role="user", text="Hi"),))


class Timing:
    def __init__(self) -> None:
        self.start = time.monotonic()
        self.calls: list[float] = []

    def __call__(self) -> None:
        self.calls.append(time.monotonic() - self.start)


async def _stream(base_url: str, request: ModelRequest = HELLO, *, api_key: str | None = KEY,
                  on_first_token: Timing | None = None) -> ModelResponse:
    async with StreamClient(connect_timeout_s=10, read_timeout_s=10) as client:
        provider = AnthropicProvider(client=client, base_url=base_url, api_key=api_key)
        return await provider.stream(request, on_first_token=on_first_token or Timing())


def stream(server: FakeAnthropicServer, request: ModelRequest = HELLO, **kwargs) -> ModelResponse:
    return asyncio.run(_stream(server.base_url, request, **kwargs))


def event(name: str, **data: object) -> str:
    return json.dumps({"type": name, **data})


def test_given_a_streamed_reply_when_streaming_then_the_text_and_usage_are_assembled() -> None:
    with FakeAnthropicServer(reply=Reply(text="One two three.")) as server:
        response = stream(server)
    assert (response.text, response.finish_reason) == ("One two three.", "end_turn")
    assert response.prompt_tokens and response.completion_tokens == 3


def test_given_a_first_token_delay_when_streaming_then_on_first_token_fires_once_after_the_delay() -> None:
    timing = Timing()
    with FakeAnthropicServer(first_token_delay_s=0.3, token_delay_s=0.05) as server:
        stream(server, on_first_token=timing)
        elapsed = time.monotonic() - timing.start
    # message_start, ping and the empty text block arrive at once and must not count.
    assert len(timing.calls) == 1
    assert 0.28 <= timing.calls[0] <= elapsed - 0.15


def test_given_tool_use_blocks_when_streaming_then_their_json_fragments_are_assembled() -> None:
    calls = [("get_weather", '{"city": "Paris", "unit": "celsius"}'), ("get_time", '{"tz": "UTC"}')]
    with FakeAnthropicServer(reply=Reply(text="Checking.", tool_calls=calls)) as server:
        response = stream(server)
    assert [(c.name, c.arguments) for c in response.tool_calls] == calls
    assert [c.id for c in response.tool_calls] == ["toolu_fake_0_0", "toolu_fake_0_1"]
    assert (response.text, response.finish_reason) == ("Checking.", "tool_use")


def test_given_a_tool_use_without_input_deltas_when_streaming_then_its_start_input_is_the_arguments() -> None:
    raw = [event("message_start", message={"usage": {"input_tokens": 3}}),
           event("content_block_start", index=0,
                 content_block={"type": "tool_use", "id": "toolu_1", "name": "now", "input": {}}),
           event("content_block_stop", index=0),
           event("message_delta", delta={"stop_reason": "tool_use"}, usage={"output_tokens": 2}),
           event("message_stop")]
    with FakeAnthropicServer(reply=Reply(raw_sse=raw)) as server:
        response = stream(server)
    assert response.tool_calls == [ToolCall("toolu_1", "now", "{}")]


def test_given_thinking_when_streaming_then_the_reasoning_and_its_signature_are_assembled() -> None:
    with FakeAnthropicServer(reply=Reply(reasoning="First, consider the question.", text="42")) as server:
        response = stream(server)
    assert response.reasoning == "First, consider the question."
    assert response.reasoning_signature == "sig-fake-0"
    assert response.text == "42"


def test_given_a_conversation_with_tools_when_streaming_then_the_body_has_messages_api_shape() -> None:
    request = ModelRequest(
        model="claude-sonnet-4", system="You are terse.",
        messages=(
            ChatMessage(role="user", text="Weather in Paris?"),
            ChatMessage(role="user", text="And be quick."),
            ChatMessage(role="assistant", text="Checking.", reasoning="Need the tool.", reasoning_signature="sig",
                        tool_calls=(ToolCall("toolu_1", "get_weather", '{"city": "Paris"}'),)),
            ChatMessage(role="tool", text="18C", tool_call_id="toolu_1"),
            ChatMessage(role="tool", text="boom", tool_call_id="toolu_2", is_error=True),
        ),
        tools=(ToolSpec("get_weather", "Current weather", {"type": "object", "properties": {}}),),
        tool_choice="required", temperature=0.5,
    )
    with FakeAnthropicServer() as server:
        stream(server, request)
        body = server.requests[0]
    assert body["system"] == "You are terse." and body["stream"] is True
    assert body["messages"] == [
        {"role": "user", "content": [{"type": "text", "text": "Weather in Paris?"},
                                     {"type": "text", "text": "And be quick."}]},
        {"role": "assistant", "content": [
            {"type": "thinking", "thinking": "Need the tool.", "signature": "sig"},
            {"type": "text", "text": "Checking."},
            {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}}]},
        {"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "toolu_1", "content": "18C"},
            {"type": "tool_result", "tool_use_id": "toolu_2", "content": "boom", "is_error": True}]},
    ]
    assert body["tools"] == [{"name": "get_weather", "description": "Current weather",
                              "input_schema": {"type": "object", "properties": {}}}]
    assert body["tool_choice"] == {"type": "any"}
    assert (body["max_tokens"], body["temperature"]) == (4096, 0.5)
    assert "thinking" not in body


def test_given_thinking_enabled_when_streaming_then_a_budget_below_max_tokens_is_sent() -> None:
    request = ModelRequest(model="claude-sonnet-4", system="", messages=HELLO.messages, enable_thinking=True,
                           max_tokens=8000, temperature=0.3)
    with FakeAnthropicServer() as server:
        stream(server, request)
        body = server.requests[0]
    assert body["thinking"] == {"type": "enabled", "budget_tokens": 4000}
    assert body["max_tokens"] == 8000
    assert "temperature" not in body and "system" not in body


def test_given_a_key_when_streaming_then_x_api_key_and_the_version_header_are_sent() -> None:
    with FakeAnthropicServer() as server:
        stream(server, api_key=KEY)
        stream(server, api_key=None)
        with_key, without_key = server.headers
    assert with_key["x-api-key"] == KEY and with_key["anthropic-version"] == "2023-06-01"
    assert "x-api-key" not in without_key and without_key["anthropic-version"] == "2023-06-01"


def test_given_base_urls_with_and_without_v1_when_building_the_url_then_messages_is_appended_once() -> None:
    assert messages_url("https://api.anthropic.com") == "https://api.anthropic.com/v1/messages"
    assert messages_url("https://proxy.example/v1/") == "https://proxy.example/v1/messages"
    assert messages_url("https://proxy.example/v1/messages") == "https://proxy.example/v1/messages"


def test_given_a_v1_endpoint_on_the_request_when_streaming_then_it_reaches_the_messages_route() -> None:
    with FakeAnthropicServer() as server:
        request = ModelRequest(model="m", system="", messages=HELLO.messages, endpoint=server.base_url + "/v1")
        assert asyncio.run(_stream(server.base_url, request)).text == "Hello from the fake model."
        assert server.headers[0]["x-api-key"] == KEY


def test_given_an_endpoint_on_another_host_when_streaming_then_the_configured_key_is_withheld() -> None:
    with FakeAnthropicServer() as server:
        request = ModelRequest(model="m", system="", messages=HELLO.messages, endpoint=server.base_url)
        asyncio.run(_stream("https://api.anthropic.com", request))
        assert "x-api-key" not in server.headers[0]


def test_given_a_529_overloaded_when_streaming_then_the_error_is_retryable_with_its_message() -> None:
    reply = Reply(status=529, retry_after="3", error_message="Overloaded")
    with FakeAnthropicServer(reply=reply) as server, pytest.raises(ProviderError) as caught:
        stream(server)
    assert (caught.value.status_code, caught.value.retryable, caught.value.retry_after_s) == (529, True, 3.0)
    assert str(caught.value) == "Anthropic returned 529: Overloaded"


def test_given_a_400_when_streaming_then_the_error_is_not_retryable() -> None:
    reply = Reply(status=400, error_message="messages: roles must alternate")
    with FakeAnthropicServer(reply=reply) as server, pytest.raises(ProviderError, match="must alternate") as caught:
        stream(server)
    assert not caught.value.retryable


def test_given_an_empty_stream_when_streaming_then_the_response_is_invalid() -> None:
    with FakeAnthropicServer(reply=Reply(text="")) as server, pytest.raises(InvalidResponseError):
        stream(server)


def test_given_malformed_json_when_streaming_then_the_response_is_invalid() -> None:
    with (
        FakeAnthropicServer(reply=Reply(raw_sse=['{"type": "message_start", "mess'])) as server,
        pytest.raises(InvalidResponseError, match="not JSON"),
    ):
        stream(server)


def test_given_a_stream_cut_before_message_stop_when_streaming_then_the_response_is_invalid() -> None:
    raw = [event("message_start", message={}),
           event("content_block_start", index=0, content_block={"type": "text", "text": ""}),
           event("content_block_delta", index=0, delta={"type": "text_delta", "text": "Half"})]
    with FakeAnthropicServer(reply=Reply(raw_sse=raw)) as server, pytest.raises(InvalidResponseError):
        stream(server)


def test_given_an_error_event_mid_stream_when_streaming_then_a_retryable_provider_error_is_raised() -> None:
    with (
        FakeAnthropicServer(reply=Reply(stream_error="Overloaded")) as server,
        pytest.raises(ProviderError, match="Overloaded") as caught,
    ):
        stream(server)
    assert caught.value.retryable


def test_given_an_error_event_quoting_the_key_when_streaming_then_the_error_names_no_key() -> None:
    with (
        FakeAnthropicServer(reply=Reply(stream_error=f"Overloaded (key {KEY})")) as server,
        pytest.raises(ProviderError, match="Overloaded") as caught,
    ):
        stream(server)
    assert KEY not in str(caught.value) and "[redacted]" in str(caught.value)


def test_given_a_held_first_token_when_the_task_is_cancelled_then_the_server_sees_the_stream_closed() -> None:
    async def scenario(server: FakeAnthropicServer) -> bool:
        async with StreamClient(connect_timeout_s=60, read_timeout_s=60) as client:
            provider = AnthropicProvider(client=client, base_url=server.base_url, api_key=KEY)
            task = asyncio.create_task(provider.stream(HELLO, on_first_token=Timing()))
            assert await asyncio.to_thread(server.wait_for_open_streams, 1, 5.0)
            cancelled_at = time.monotonic()
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            while time.monotonic() - cancelled_at < 1.0:
                if server.streams_closed_by_client == 1:
                    return True
                await asyncio.sleep(0.01)
            return False

    with FakeAnthropicServer(first_token_delay_s=30.0) as server:
        assert asyncio.run(scenario(server))
        assert server.completed_streams == 0


def test_given_thinking_and_a_tool_loop_whose_first_step_ran_without_it_when_built_then_thinking_stays_off() -> None:
    from app.providers.anthropic_body import build_body
    from app.providers.base import ChatMessage, ModelRequest, ToolCall

    call = ToolCall(id="toolu_1", name="search", arguments="{}")
    loop = (ChatMessage(role="user", text="hi"), ChatMessage(role="assistant", tool_calls=(call,)),
            ChatMessage(role="tool", text="r", tool_call_id="toolu_1"))
    request = ModelRequest(model="claude", system="s", messages=loop, enable_thinking=True)
    assert "thinking" not in build_body(request)
    signed = (loop[0], ChatMessage(role="assistant", tool_calls=(call,), reasoning="why", reasoning_signature="sig"),
              loop[2])
    assert build_body(ModelRequest(model="claude", system="s", messages=signed, enable_thinking=True))["thinking"]
    fresh = (*loop, ChatMessage(role="user", text="next question"))
    assert "thinking" in build_body(ModelRequest(model="claude", system="s", messages=fresh, enable_thinking=True))


PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAQAAAC1HAwCAAAAC0lEQVR42mNkYAAAAAYAAjCB0C8AAAAASUVORK5CYII="


def test_given_a_user_turn_with_images_when_streaming_then_they_go_as_image_blocks_among_the_text() -> None:
    turn = ChatMessage(role="user", text="Compare  with ", images=(
        ImageInput(kind="base64", at=len("Compare "), media_type="image/png", data=PNG, detail="low"),
        ImageInput(kind="url", at=len("Compare  with "), url="https://example.com/b.jpg")))
    request = ModelRequest(model="claude-sonnet-4", system="", messages=(turn,))
    with FakeAnthropicServer() as server:
        stream(server, request)
        body = server.requests[0]
    assert body["messages"] == [{"role": "user", "content": [
        {"type": "text", "text": "Compare "},
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}},
        {"type": "text", "text": " with "},
        {"type": "image", "source": {"type": "url", "url": "https://example.com/b.jpg"}},
    ]}]


def test_given_an_image_only_turn_then_its_content_is_the_image_block_alone() -> None:
    from app.providers.anthropic_body import build_messages

    image = ImageInput(kind="url", url="https://example.com/chart.png")
    turns = build_messages((ChatMessage(role="user", images=(image,)),))
    assert turns == [{"role": "user", "content": [
        {"type": "image", "source": {"type": "url", "url": "https://example.com/chart.png"}}]}]


def test_given_cr_line_ends_and_events_split_across_reads_when_streaming_then_the_reply_is_assembled() -> None:
    events = [("message_start", {"message": {"usage": {"input_tokens": 5, "output_tokens": 1}}}), ("ping", {}),
              ("content_block_start", {"index": 0, "content_block": {"type": "text", "text": ""}}),
              ("content_block_delta", {"index": 0, "delta": {"type": "text_delta", "text": "Caf\u00e9"}}),
              ("content_block_delta", {"index": 0, "delta": {"type": "text_delta", "text": " \u2603"}}),
              ("content_block_stop", {"index": 0}),
              ("message_delta", {"delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": 2}}),
              ("message_stop", {})]
    raw = b":comment\r\r" + b"".join(
        f"event: {name}\rdata: {json.dumps({'type': name, **data}, ensure_ascii=False)}\r\r".encode()
        for name, data in events)
    pieces = [raw[start:start + 13] for start in range(0, len(raw), 13)]
    with FakeAnthropicServer(reply=Reply(raw_body=pieces)) as server:
        response = stream(server)
    assert (response.text, response.finish_reason) == ("Caf\u00e9 \u2603", "end_turn")
    assert (response.prompt_tokens, response.completion_tokens) == (5, 2)


def test_given_an_error_event_split_across_reads_when_streaming_then_a_retryable_provider_error_is_raised() -> None:
    raw = (b'event: message_start\r\ndata: {"type": "message_start", "message": {}}\r\n\r\n'
           b'event: error\r\ndata: {"type": "error", "error": {"type": "overloaded_error", '
           b'"message": "Overloaded"}}\r\n\r\n')
    with (
        FakeAnthropicServer(reply=Reply(raw_body=[raw[start:start + 7] for start in range(0, len(raw), 7)])) as server,
        pytest.raises(ProviderError, match="Overloaded") as caught,
    ):
        stream(server)
    assert caught.value.retryable
