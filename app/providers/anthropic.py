"""Anthropic Messages API, streamed."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from pydantic import SecretStr

from app.providers.base import (
    ChatMessage,
    FirstToken,
    ImageInput,
    InvalidResponseError,
    ModelRequest,
    ModelResponse,
    OnFirstToken,
    ToolCall,
    ToolSpec,
    text_and_images,
)
from app.providers.events import Event
from app.providers.http import StreamClient
from app.providers.sse import decode_json, key_for, open_sse, stream_error
from app.providers.wire import encode, join_body, kept

LABEL = "Anthropic"
API_VERSION = "2023-06-01"
#: Anthropic requires max_tokens; this is what a request without one gets.
DEFAULT_MAX_TOKENS = 4096
#: Anthropic's smallest accepted thinking budget.
MIN_THINKING_BUDGET = 1024


class AnthropicProvider:
    def __init__(self, *, client: StreamClient, base_url: str, api_key: str | SecretStr | None) -> None:
        self._client = client
        self._base_url = base_url
        self._api_key = api_key

    async def stream(self, request: ModelRequest, *, on_first_token: OnFirstToken) -> ModelResponse:
        url = messages_url(request.endpoint or self._base_url)
        key, auth_hint = key_for(url, self._base_url, self._api_key)
        headers = {"anthropic-version": API_VERSION, "Accept": "text/event-stream"}
        if key:
            headers["x-api-key"] = key
        async with open_sse(self._client, url, label=LABEL, body=encode_body(request),
                            headers=headers, secrets=(key,), auth_hint=auth_hint) as stream:
            acc = _Accumulator(on_first_token)
            async for events in stream:
                if acc.feed_events(events):
                    break
        return acc.result()


def messages_url(base: str) -> str:
    base = base.rstrip("/")
    if base.endswith("/v1/messages"):
        return base
    return f"{base}/messages" if base.endswith("/v1") else f"{base}/v1/messages"


def _tool_loop_began_with_thinking(messages: tuple[ChatMessage, ...]) -> bool:
    """With thinking on, Anthropic requires every assistant turn of the current tool loop (since
    the last user text) that used tools to open with a signed thinking block; a step that ran
    without thinking (a forced tool call) means thinking stays off until the next user turn."""
    for message in reversed(messages):
        if message.role == "user":
            return True
        if message.role == "assistant" and message.tool_calls and not message.reasoning_signature:
            return False
    return True


def build_body(request: ModelRequest) -> dict[str, Any]:
    """The request body; what is sent is `encode_body`'s encoding of it."""
    tools = {"tools": [_tool(t) for t in request.tools]} if request.tools else {}
    return {"messages": build_messages(request.messages), **tools, **_options(request)}


def encode_body(request: ModelRequest) -> bytes:
    """`build_body` as JSON, each turn's blocks encoded once per process (app/providers/wire.py)."""
    turns = [b'{"role":"%s","content":[%s]}' % (role, b",".join(blocks))
             for role, blocks in _turns(request.messages, _encoded_blocks)]
    tools = [kept(t.wire, LABEL, t, lambda t: encode(_tool(t))) for t in request.tools]
    return join_body(turns, tools, _options(request))


def _tool(t: ToolSpec) -> dict[str, Any]:
    return {"name": t.name, "input_schema": t.parameters} | ({"description": t.description} if t.description else {})


def _options(request: ModelRequest) -> dict[str, Any]:
    """Everything of the body but the messages and tools."""
    max_tokens = request.max_tokens if request.max_tokens is not None else DEFAULT_MAX_TOKENS
    body: dict[str, Any] = {"model": request.model, "stream": True}
    if request.system:
        body["system"] = request.system
    if request.tools and request.tool_choice is not None:
        body["tool_choice"] = {"type": "any" if request.tool_choice == "required" else "auto"}
    # Anthropic refuses thinking together with a forced tool choice; forcing the tool is what
    # keeps a tool-driven agent loop going, so it wins and thinking is left off.
    thinking = request.enable_thinking and not (request.tools and request.tool_choice == "required") \
        and _tool_loop_began_with_thinking(request.messages)
    if thinking:
        # The budget counts inside max_tokens and must be below it: keep the caller's max_tokens
        # for the answer itself when it leaves no room for the smallest budget.
        budget = max(MIN_THINKING_BUDGET, max_tokens // 2)
        if budget >= max_tokens:
            max_tokens += budget
        body["thinking"] = {"type": "enabled", "budget_tokens": budget}
    elif request.temperature is not None:
        # With thinking on, Anthropic accepts no temperature other than its default.
        body["temperature"] = request.temperature
    body["max_tokens"] = max_tokens
    return body


def build_messages(messages: tuple[ChatMessage, ...]) -> list[dict[str, Any]]:
    """Anthropic turns: tool results ride in user turns, and same-role neighbours are merged
    because the API requires user and assistant to alternate."""
    return [{"role": role.decode(), "content": blocks}
            for role, blocks in _turns(messages, lambda m: [(b["type"] == "tool_result", b) for b in _blocks(m)])]


def _encoded_blocks(m: ChatMessage) -> list[tuple[bool, bytes]]:
    return kept(m.wire, LABEL, m, lambda m: [(b["type"] == "tool_result", encode(b)) for b in _blocks(m)])


def _turns(messages: tuple[ChatMessage, ...], blocks_of: Any) -> list[tuple[bytes, list[Any]]]:
    """(role, blocks) of each turn, from each message's (is a tool result, block) pairs."""
    turns: list[tuple[bytes, list[tuple[bool, Any]]]] = []
    for m in messages:
        role = b"assistant" if m.role == "assistant" else b"user"
        blocks = blocks_of(m)
        if not blocks:
            continue  # Anthropic rejects empty content
        if turns and turns[-1][0] == role:
            turns[-1][1].extend(blocks)
        else:
            turns.append((role, list(blocks)))
    out = []
    for role, pairs in turns:
        if role == b"user" and len(pairs) > 1:
            # tool_result blocks must come first in their user turn.
            pairs.sort(key=lambda pair: not pair[0])
        out.append((role, [block for _, block in pairs]))
    return out


def _blocks(m: ChatMessage) -> list[dict[str, Any]]:
    if m.role == "tool":
        block: dict[str, Any] = {"type": "tool_result", "tool_use_id": m.tool_call_id or ""}
        if m.text:
            block["content"] = m.text
        if m.is_error:
            block["is_error"] = True
        return [block]
    blocks: list[dict[str, Any]] = []
    # A thinking block goes back only with its signature (the API rejects unsigned ones), and
    # it must lead the assistant turn.
    if m.role == "assistant" and m.reasoning and m.reasoning_signature:
        blocks.append({"type": "thinking", "thinking": m.reasoning, "signature": m.reasoning_signature})
    if m.images:
        blocks.extend({"type": "text", "text": piece} if isinstance(piece, str) else _image_block(piece)
                      for piece in text_and_images(m))
    elif m.text:
        blocks.append({"type": "text", "text": m.text})
    if m.role == "assistant":
        blocks.extend({"type": "tool_use", "id": c.id, "name": c.name, "input": _tool_input(c.arguments)}
                      for c in m.tool_calls)
    return blocks


def _image_block(image: ImageInput) -> dict[str, Any]:
    if image.kind == "url":
        return {"type": "image", "source": {"type": "url", "url": image.url}}
    return {"type": "image", "source": {"type": "base64", "media_type": image.media_type, "data": image.data}}


def _tool_input(arguments: str) -> dict[str, Any]:
    # The model may have produced invalid JSON (its tool result already said so); the API
    # needs an object, so such a call is replayed with empty input.
    try:
        value = json.loads(arguments) if arguments.strip() else {}
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


@dataclass
class _Block:
    type: str
    parts: list[str] = field(default_factory=list)
    id: str = ""
    name: str = ""
    initial_input: Any = None
    signature: str | None = None


class _Accumulator:
    def __init__(self, on_first_token: OnFirstToken) -> None:
        self._first_token = FirstToken(on_first_token)
        self.done = False
        self._blocks: dict[int, _Block] = {}
        self._stop_reason: str | None = None
        self._input_tokens: int | None = None
        self._output_tokens: int | None = None

    def feed_events(self, events: list[Event]) -> bool:
        """Take one network read's events; True at message_stop (what follows it is not read)."""
        for name, data in events:
            if not data or data.isspace():
                continue
            self.feed(name, decode_json(data, LABEL, "event"))
            if self.done:
                return True
        return False

    def feed(self, event_name: str, data: dict[str, Any]) -> None:
        # The data's own "type" is authoritative; the SSE event line is only a fallback.
        kind = data.get("type") or event_name
        # Proxies sometimes send a bare {"error": {...}} without a type.
        if kind == "error" or ("type" not in data and data.get("error")):
            raise stream_error(LABEL, data.get("error"))
        if kind == "message_start":
            self._usage((data.get("message") or {}).get("usage"))
        elif kind == "content_block_start":
            self._start(data.get("index", len(self._blocks)), data.get("content_block") or {})
        elif kind == "content_block_delta":
            self._delta(data.get("index", 0), data.get("delta") or {})
        elif kind == "message_delta":
            delta = data.get("delta") or {}
            if delta.get("stop_reason"):
                self._stop_reason = delta["stop_reason"]
            self._usage(data.get("usage"))
        elif kind == "message_stop":
            self.done = True
        # ping, content_block_stop and event types Anthropic adds later need nothing.

    def _usage(self, usage: Any) -> None:
        if isinstance(usage, dict):
            self._input_tokens = usage.get("input_tokens", self._input_tokens)
            self._output_tokens = usage.get("output_tokens", self._output_tokens)

    def _start(self, index: int, cb: dict[str, Any]) -> None:
        block = _Block(type=str(cb.get("type", "")), id=cb.get("id") or "", name=cb.get("name") or "",
                       initial_input=cb.get("input"), signature=cb.get("signature"))
        self._blocks[index] = block
        initial = cb.get("text") if block.type == "text" else cb.get("thinking")
        if isinstance(initial, str) and initial:
            block.parts.append(initial)
            self._first_token()
        if block.type == "tool_use":
            self._first_token()  # the call's name is already tool-call data

    def _delta(self, index: int, delta: dict[str, Any]) -> None:
        kind = delta.get("type")
        block_type = {"text_delta": "text", "thinking_delta": "thinking", "signature_delta": "thinking",
                      "input_json_delta": "tool_use"}.get(str(kind))
        if block_type is None:
            return  # citations and future delta kinds carry nothing we assemble
        block = self._blocks.setdefault(index, _Block(type=block_type))
        if kind == "signature_delta":
            block.signature = (block.signature or "") + str(delta.get("signature", ""))
            return
        piece = delta.get({"text_delta": "text", "thinking_delta": "thinking"}.get(kind, "partial_json"))
        if isinstance(piece, str) and piece:
            block.parts.append(piece)
            self._first_token()

    def result(self) -> ModelResponse:
        if not self.done and self._stop_reason is None:
            raise InvalidResponseError(f"{LABEL} stream ended before message_stop")
        blocks = [self._blocks[i] for i in sorted(self._blocks)]
        text = "".join("".join(b.parts) for b in blocks if b.type == "text")
        thinking = [b for b in blocks if b.type == "thinking"]
        reasoning = "".join("".join(b.parts) for b in thinking)
        # The neutral response holds one thinking block: interleaved ones are joined and the
        # last signature kept.
        signature = next((b.signature for b in reversed(thinking) if b.signature), None)
        calls = [ToolCall(id=b.id or f"toolu_{i}", name=b.name, arguments=_arguments(b))
                 for i, b in enumerate(blocks) if b.type == "tool_use"]
        if any(not c.name for c in calls):
            raise InvalidResponseError(f"{LABEL} streamed a tool_use block without a name")
        if not text and not reasoning and not calls:
            raise InvalidResponseError(f"{LABEL} stream carried no text, thinking or tool use")
        return ModelResponse(text=text, reasoning=reasoning, reasoning_signature=signature, tool_calls=calls,
                             finish_reason=self._stop_reason, prompt_tokens=self._input_tokens,
                             completion_tokens=self._output_tokens)


def _arguments(block: _Block) -> str:
    if block.parts:
        return "".join(block.parts)
    # No input_json_delta at all: the start event's input (normally {}) is the whole input.
    return json.dumps(block.initial_input if isinstance(block.initial_input, dict) else {})
