"""OpenAIProvider against a real local server speaking the Chat Completions streaming format."""

from __future__ import annotations

import asyncio
import json
import socket
import time

import pytest

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
from app.providers.openai import OpenAIProvider, build_body
from tests.fakes.model_servers import FakeOpenAIServer, Reply

KEY = "sk-test-secret-123"
HELLO = ModelRequest(model="gpt-4o-mini", system="Be brief.", messages=(ChatMessage(role="user", text="Hi"),))


class Timing:
    def __init__(self) -> None:
        self.start = time.monotonic()
        self.calls: list[float] = []

    def __call__(self) -> None:
        self.calls.append(time.monotonic() - self.start)


async def _stream(base_url: str, request: ModelRequest = HELLO, *, api_key: str | None = KEY,
                  on_first_token: Timing | None = None) -> ModelResponse:
    async with StreamClient(connect_timeout_s=10, read_timeout_s=10) as client:
        provider = OpenAIProvider(client=client, base_url=base_url, api_key=api_key)
        return await provider.stream(request, on_first_token=on_first_token or Timing())


def stream(server: FakeOpenAIServer, request: ModelRequest = HELLO, **kwargs) -> ModelResponse:
    return asyncio.run(_stream(server.base_url, request, **kwargs))


def test_given_a_streamed_reply_when_streaming_then_the_text_is_assembled_from_every_chunk() -> None:
    with FakeOpenAIServer(reply=Reply(text="One two three four.")) as server:
        response = stream(server)
    assert response.text == "One two three four."
    assert response.finish_reason == "stop"
    assert response.tool_calls == []
    assert response.prompt_tokens and response.completion_tokens == 4


def test_given_a_first_token_delay_when_streaming_then_on_first_token_fires_once_after_the_delay() -> None:
    timing = Timing()
    with FakeOpenAIServer(first_token_delay_s=0.3, token_delay_s=0.05) as server:
        stream(server, on_first_token=timing)
        elapsed = time.monotonic() - timing.start
    # The role-only chunk arrives at once; the first token only after 0.3 s, and the remaining
    # four words take another ~0.2 s, so the callback must fire in between, exactly once.
    assert len(timing.calls) == 1
    assert 0.28 <= timing.calls[0] <= elapsed - 0.15


def test_given_tool_call_fragments_when_streaming_then_each_call_is_assembled() -> None:
    calls = [("get_weather", '{"city": "Paris", "unit": "celsius"}'), ("get_time", '{"tz": "Europe/Paris"}')]
    with FakeOpenAIServer(reply=Reply(text="", tool_calls=calls)) as server:
        response = stream(server)
    assert [(c.name, c.arguments) for c in response.tool_calls] == calls
    assert [c.id for c in response.tool_calls] == ["call_fake_0_0", "call_fake_0_1"]
    assert response.finish_reason == "tool_calls"


def test_given_interleaved_tool_call_deltas_when_streaming_then_fragments_are_joined_by_index() -> None:
    def delta(d: dict, finish: str | None = None) -> str:
        return json.dumps({"choices": [{"index": 0, "delta": d, "finish_reason": finish}]})

    def call(i: int, **fields: object) -> dict:
        return {"tool_calls": [{"index": i, **fields}]}

    raw = [
        delta(call(1, id="call_b", type="function", function={"name": "second", "arguments": ""})),
        delta(call(0, id="call_a", type="function", function={"name": "first", "arguments": '{"x"'})),
        delta(call(1, function={"arguments": '{"y": 2}'})),
        delta(call(0, function={"arguments": ": 1}"})),
        delta({}, "tool_calls"),
        "[DONE]",
    ]
    with FakeOpenAIServer(reply=Reply(raw_sse=raw)) as server:
        response = stream(server)
    assert response.tool_calls == [ToolCall("call_a", "first", '{"x": 1}'), ToolCall("call_b", "second", '{"y": 2}')]


def test_given_reasoning_content_when_streaming_then_reasoning_is_kept_apart_from_the_text() -> None:
    with FakeOpenAIServer(reply=Reply(reasoning="Let me think about it.", text="Yes.")) as server:
        response = stream(server)
    assert response.reasoning == "Let me think about it."
    assert response.text == "Yes."


def test_given_a_vllm_style_reasoning_field_when_streaming_then_it_counts_as_reasoning() -> None:
    raw = [json.dumps({"choices": [{"index": 0, "delta": {"reasoning": "Hmm."}, "finish_reason": None}]}),
           json.dumps({"choices": [{"index": 0, "delta": {}, "finish_reason": "length"}]}), "[DONE]"]
    timing = Timing()
    with FakeOpenAIServer(reply=Reply(raw_sse=raw)) as server:
        response = stream(server, on_first_token=timing)
    assert (response.reasoning, response.text, response.finish_reason) == ("Hmm.", "", "length")
    assert len(timing.calls) == 1


def test_given_system_tools_and_tool_results_when_streaming_then_the_body_has_chat_completions_shape() -> None:
    request = ModelRequest(
        model="gpt-4o-mini", system="You are terse.",
        messages=(
            ChatMessage(role="user", text="Weather in Paris?"),
            ChatMessage(role="assistant", tool_calls=(ToolCall("call_1", "get_weather", '{"city": "Paris"}'),)),
            ChatMessage(role="tool", text="18C", tool_call_id="call_1"),
        ),
        tools=(ToolSpec("get_weather", "Current weather", {"type": "object", "properties": {}}),),
        tool_choice="required", temperature=0.2, max_tokens=64,
    )
    with FakeOpenAIServer() as server:
        stream(server, request)
        body = server.requests[0]
    assert body["model"] == "gpt-4o-mini"
    assert body["stream"] is True and body["stream_options"] == {"include_usage": True}
    assert body["messages"] == [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "call_1", "type": "function", "function": {"name": "get_weather",
                                                               "arguments": '{"city": "Paris"}'}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "18C"},
    ]
    assert body["tools"] == [{"type": "function", "function": {
        "name": "get_weather", "description": "Current weather", "parameters": {"type": "object", "properties": {}}}}]
    assert (body["tool_choice"], body["temperature"], body["max_tokens"]) == ("required", 0.2, 64)


def test_given_api_openai_com_when_building_the_body_then_max_tokens_is_sent_as_max_completion_tokens() -> None:
    request = ModelRequest(model="o3-mini", system="", messages=HELLO.messages, max_tokens=100)
    assert build_body(request, "https://api.openai.com/v1/chat/completions")["max_completion_tokens"] == 100
    assert "max_tokens" not in build_body(request, "https://api.openai.com/v1/chat/completions")
    assert build_body(request, "http://vllm.internal:8000/v1/chat/completions")["max_tokens"] == 100


def test_given_comments_and_multi_line_data_when_streaming_then_the_sse_events_are_reassembled() -> None:
    # One event split over two data: lines; SSE joins them with a newline, which JSON allows.
    split = '{"choices": [{"index": 0,\ndata: "delta": {"content": "joined"}, "finish_reason": "stop"}]}'
    with FakeOpenAIServer(reply=Reply(raw_sse=[split, "[DONE]\n\n: a comment"])) as server:
        response = stream(server)
    assert (response.text, response.finish_reason) == ("joined", "stop")


def test_given_an_api_key_when_streaming_then_it_is_sent_as_a_bearer_token_and_never_without_one() -> None:
    with FakeOpenAIServer() as server:
        stream(server, api_key=KEY)
        stream(server, api_key=None)
        with_key, without_key = server.headers
    assert with_key["authorization"] == f"Bearer {KEY}"
    assert "authorization" not in without_key


def test_given_an_endpoint_on_another_host_when_streaming_then_it_is_used_without_the_configured_key() -> None:
    with FakeOpenAIServer() as server:
        request = ModelRequest(model="m", system="", messages=HELLO.messages, endpoint=server.base_url + "/")
        response = asyncio.run(_stream(f"http://127.0.0.1:{_closed_port()}/v1", request))
        headers = server.headers[0]
    assert response.text == "Hello from the fake model."
    assert "authorization" not in headers  # the operator's key never goes to a user-chosen host


def test_given_a_401_from_a_foreign_endpoint_when_streaming_then_the_error_explains_the_withheld_key() -> None:
    with FakeOpenAIServer(reply=Reply(status=401, error_message="You didn't provide an API key.")) as server:
        request = ModelRequest(model="m", system="", messages=HELLO.messages, endpoint=server.base_url)
        with pytest.raises(ProviderError) as caught:
            asyncio.run(_stream("https://api.openai.com/v1", request))
    assert "You didn't provide an API key." in str(caught.value)
    assert "only sent to https://api.openai.com/v1" in str(caught.value)
    assert caught.value.status_code == 401 and not caught.value.retryable


def test_given_an_endpoint_on_the_configured_origin_when_streaming_then_the_key_is_sent() -> None:
    with FakeOpenAIServer() as server:
        request = ModelRequest(model="m", system="", messages=HELLO.messages,
                               endpoint=server.base_url + "/chat/completions")
        asyncio.run(_stream(server.base_url, request))
        assert server.headers[0]["authorization"] == f"Bearer {KEY}"


def test_given_a_429_with_retry_after_when_streaming_then_the_error_is_retryable_and_carries_the_wait() -> None:
    reply = Reply(status=429, retry_after="7", error_message="Rate limit reached for gpt-4o-mini.")
    with FakeOpenAIServer(reply=reply) as server, pytest.raises(ProviderError) as caught:
        stream(server)
    error = caught.value
    assert (error.status_code, error.retryable, error.retry_after_s) == (429, True, 7.0)
    assert "Rate limit reached for gpt-4o-mini." in str(error)


def test_given_a_400_echoing_the_key_when_streaming_then_the_error_is_final_and_the_key_is_redacted() -> None:
    reply = Reply(status=400, error_message=f"Invalid request (key {KEY})")
    with FakeOpenAIServer(reply=reply) as server, pytest.raises(ProviderError) as caught:
        stream(server)
    assert caught.value.status_code == 400 and not caught.value.retryable
    assert "Invalid request" in str(caught.value) and KEY not in str(caught.value)


@pytest.mark.parametrize("reply", [Reply(text="partial", stream_error=f"overloaded: {KEY}"),
                                   Reply(raw_sse=[f'{{"error": "bad key {KEY}'])], ids=["error event", "not JSON"])
def test_given_a_stream_that_breaks_quoting_the_key_when_streaming_then_the_error_names_no_key(reply) -> None:
    with FakeOpenAIServer(reply=reply) as server, pytest.raises((ProviderError, InvalidResponseError)) as caught:
        stream(server)
    assert "[redacted]" in str(caught.value) and KEY not in str(caught.value)


def test_given_an_empty_stream_when_streaming_then_the_response_is_invalid() -> None:
    with FakeOpenAIServer(reply=Reply(text="")) as server, pytest.raises(InvalidResponseError):
        stream(server)


def test_given_malformed_json_in_the_stream_when_streaming_then_the_response_is_invalid() -> None:
    with (
        FakeOpenAIServer(reply=Reply(raw_sse=['{"choices": [', "[DONE]"])) as server,
        pytest.raises(InvalidResponseError, match="not JSON"),
    ):
        stream(server)


def test_given_a_stream_without_done_or_finish_reason_when_streaming_then_the_response_is_invalid() -> None:
    raw = [json.dumps({"choices": [{"index": 0, "delta": {"content": "Half"}, "finish_reason": None}]})]
    with FakeOpenAIServer(reply=Reply(raw_sse=raw)) as server, pytest.raises(InvalidResponseError):
        stream(server)


def test_given_an_error_event_mid_stream_when_streaming_then_a_provider_error_is_raised() -> None:
    with (
        FakeOpenAIServer(reply=Reply(stream_error="The server had an error")) as server,
        pytest.raises(ProviderError, match="The server had an error") as caught,
    ):
        stream(server)
    assert caught.value.retryable


def test_given_a_connection_dropped_mid_stream_when_streaming_then_a_retryable_provider_error_is_raised() -> None:
    with (
        FakeOpenAIServer(reply=Reply(drop_after_tokens=2)) as server,
        pytest.raises(ProviderError) as caught,
    ):
        stream(server)
    assert caught.value.retryable and caught.value.status_code is None


def test_given_nothing_listening_when_streaming_then_a_retryable_provider_error_is_raised() -> None:
    with pytest.raises(ProviderError, match="connection failed") as caught:
        asyncio.run(_stream(f"http://127.0.0.1:{_closed_port()}/v1"))
    assert caught.value.retryable


def test_given_a_held_first_token_when_the_task_is_cancelled_then_the_server_sees_the_stream_closed() -> None:
    async def scenario(server: FakeOpenAIServer) -> float | None:
        async with StreamClient(connect_timeout_s=60, read_timeout_s=60) as client:
            provider = OpenAIProvider(client=client, base_url=server.base_url, api_key=KEY)
            task = asyncio.create_task(provider.stream(HELLO, on_first_token=Timing()))
            assert await asyncio.to_thread(server.wait_for_open_streams, 1, 5.0)
            cancelled_at = time.monotonic()
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            # Still inside the client: only the cancelled stream itself can have closed it.
            while time.monotonic() - cancelled_at < 1.0:
                if server.streams_closed_by_client == 1:
                    return time.monotonic() - cancelled_at
                await asyncio.sleep(0.01)
            return None

    with FakeOpenAIServer(first_token_delay_s=30.0) as server:
        assert asyncio.run(scenario(server)) is not None
        assert server.completed_streams == 0


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_given_an_api_key_with_a_trailing_newline_when_streaming_then_a_final_error_names_the_cause_not_the_key(
) -> None:
    with FakeOpenAIServer() as server, pytest.raises(ProviderError, match="line break") as caught:
        stream(server, api_key="sk-SECRET\n")
    assert not caught.value.retryable
    assert "SECRET" not in str(caught.value)
    assert server.requests == []


def test_given_an_error_quoting_a_key_with_an_escaped_newline_when_redacted_then_no_form_of_the_key_remains() -> None:
    from app.providers.sse import redact

    text = "Illegal header value b'Bearer sk-SECRET\\n' and sk-SECRET"
    assert "SECRET" not in redact(text, ["sk-SECRET\n"])


PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAQAAAC1HAwCAAAAC0lEQVR42mNkYAAAAAYAAjCB0C8AAAAASUVORK5CYII="
WITH_IMAGES = ChatMessage(role="user", text="Compare  with ", images=(
    ImageInput(kind="base64", at=len("Compare "), media_type="image/png", data=PNG),
    ImageInput(kind="url", at=len("Compare  with "), url="https://example.com/b.jpg", detail="high")))


def test_given_a_user_turn_with_images_when_streaming_then_they_go_as_image_url_parts_among_the_text() -> None:
    request = ModelRequest(model="gpt-4o-mini", system="", messages=(WITH_IMAGES,))
    with FakeOpenAIServer() as server:
        stream(server, request)
        body = server.requests[0]
    assert body["messages"] == [{"role": "user", "content": [
        {"type": "text", "text": "Compare "},
        {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}},
        {"type": "text", "text": " with "},
        {"type": "image_url", "image_url": {"url": "https://example.com/b.jpg", "detail": "high"}},
    ]}]


def test_given_a_server_that_refuses_images_when_streaming_then_its_refusal_is_the_error_not_a_silent_drop() -> None:
    refusal = Reply(status=400, error_message="This model does not support image input.")
    with FakeOpenAIServer(reply=refusal) as server, pytest.raises(ProviderError) as raised:
        stream(server, ModelRequest(model="text-only", system="", messages=(WITH_IMAGES,)))
    assert "does not support image input" in str(raised.value) and not raised.value.retryable
    assert server.requests[0]["messages"][0]["content"][1]["type"] == "image_url"


def _pieces(raw: bytes, size: int = 11) -> list[bytes]:
    return [raw[start:start + size] for start in range(0, len(raw), size)]


def _data(delta: dict, finish: str | None = None) -> bytes:
    chunk = {"choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
    return b"data: " + json.dumps(chunk, ensure_ascii=False).encode()


def test_given_crlf_lines_and_keep_alives_split_across_reads_when_streaming_then_the_reply_is_assembled() -> None:
    raw = b"\r\n".join([b": keep-alive", b"", _data({"content": "Caf"}), b"", b": ping", b"",
                        _data({"content": "\u00e9 \u2603"}), b"", _data({}, "stop"), b"",
                        b'data: {"choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 2}}', b"",
                        b"data: [DONE]", b"", b""])
    # Pieces of 11 bytes split the lines, their CRLFs and the multi-byte characters between reads.
    with FakeOpenAIServer(reply=Reply(raw_body=_pieces(raw))) as server:
        response = stream(server)
    assert (response.text, response.finish_reason) == ("Caf\u00e9 \u2603", "stop")
    assert (response.prompt_tokens, response.completion_tokens) == (3, 2)


def test_given_done_without_its_blank_line_when_streaming_then_the_reply_ends_there() -> None:
    raw = _data({"content": "Hi"}) + b"\n\n" + b"data: [DONE]"
    with FakeOpenAIServer(reply=Reply(raw_body=[raw])) as server:
        assert stream(server).text == "Hi"


def test_given_an_error_event_with_crlf_lines_split_across_reads_when_streaming_then_a_provider_error_is_raised(
) -> None:
    raw = (_data({"content": "Half"}) + b"\r\n\r\n"
           + b'data: {"error": {"message": "The server had an error", "type": "server_error"}}\r\n\r\n')
    with (
        FakeOpenAIServer(reply=Reply(raw_body=_pieces(raw, 5))) as server,
        pytest.raises(ProviderError, match="The server had an error") as caught,
    ):
        stream(server)
    assert caught.value.retryable


def test_given_bytes_that_are_not_utf8_in_a_chunk_when_streaming_then_they_become_replacement_characters() -> None:
    raw = _data({"content": "aXb"}, "stop").replace(b"aXb", b"a\xffb") + b"\n\ndata: [DONE]\n\n"
    with FakeOpenAIServer(reply=Reply(raw_body=[raw])) as server:
        assert stream(server).text == "a\ufffdb"
