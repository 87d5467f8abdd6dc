"""The request bodies the providers send: encoded with each turn's JSON kept on the turn
(ChatMessage.wire), they must say exactly what the plain body says, however often a turn is resent."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from app.providers import anthropic_body as anthropic
from app.providers import openai
from app.providers.base import ChatMessage, ImageInput, ModelRequest, ToolCall, ToolSpec

WEATHER = ToolSpec("get_weather", "Current weather", {"type": "object", "properties": {"city": {"type": "string"}}})
CALL = ToolCall("call_1", "get_weather", '{"city": "Paris"}')


def conversation() -> ModelRequest:
    return ModelRequest(
        model="m", system="You are terse. \u00e9\u4e2d \"quoted\"\n",
        messages=(
            ChatMessage(role="user", text="Weather in Paris? \u2603", images=(
                ImageInput(kind="url", at=8, url="https://example.test/p.png", detail="low"),
                ImageInput(kind="base64", at=18, media_type="image/png", data="aGVsbG8="))),
            ChatMessage(role="user", text="And be quick."),
            ChatMessage(role="assistant", text="Checking.", reasoning="Need the tool.", reasoning_signature="sig",
                        tool_calls=(CALL,)),
            ChatMessage(role="user", text="Still there?"),
            ChatMessage(role="tool", text="18C", tool_call_id="call_1"),
            ChatMessage(role="tool", text="boom", tool_call_id="call_2", is_error=True),
            ChatMessage(role="assistant", text=""),
            ChatMessage(role="assistant", text="It is 18C."),
        ),
        tools=(WEATHER,), tool_choice="required", temperature=0.2, max_tokens=64,
    )


@pytest.mark.parametrize(("encode", "build"), [
    (lambda r: openai.encode_body(r, "http://vllm.test/v1/chat/completions"),
     lambda r: openai.build_body(r, "http://vllm.test/v1/chat/completions")),
    (anthropic.encode_body, anthropic.build_body),
], ids=["openai", "anthropic"])
def test_given_a_conversation_sent_twice_when_encoded_then_each_time_it_is_the_plain_body(encode, build) -> None:
    request = conversation()
    first = encode(request)
    assert json.loads(first) == build(request)
    assert encode(request) == first  # the second time from the turns' kept encodings
    assert all(message.wire for message in request.messages)


def test_given_anthropic_tool_results_after_user_text_when_encoded_then_they_lead_their_merged_user_turn() -> None:
    body = json.loads(anthropic.encode_body(conversation()))
    merged = body["messages"][2]
    assert merged["role"] == "user"
    assert [block["type"] for block in merged["content"]] == ["tool_result", "tool_result", "text"]


@pytest.mark.parametrize("module", [openai, anthropic], ids=["openai", "anthropic"])
def test_given_a_turn_encoded_once_when_replaced_with_more_tool_calls_then_the_new_turn_is_encoded_afresh(
        module) -> None:
    turn = ChatMessage(role="assistant", text="Checking.", tool_calls=(CALL,))
    module.encode_body(ModelRequest(model="m", system="", messages=(turn,)))
    more = replace(turn, tool_calls=(CALL, ToolCall("call_9", "get_weather", "{}")))
    request = ModelRequest(model="m", system="", messages=(more,))
    assert json.loads(module.encode_body(request)) == module.build_body(request)
    assert "call_9" in module.encode_body(request).decode()


def test_given_a_request_without_tools_or_options_when_encoded_then_no_empty_field_is_sent() -> None:
    request = ModelRequest(model="m", system="", messages=(ChatMessage(role="user", text="hi"),))
    assert json.loads(openai.encode_body(request)) == {
        "messages": [{"role": "user", "content": "hi"}], "model": "m", "stream": True,
        "stream_options": {"include_usage": True}}
    assert json.loads(anthropic.encode_body(request)) == {
        "messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}]}], "model": "m", "stream": True,
        "max_tokens": 4096}
