"""Anthropic Messages API, streamed."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from pydantic import SecretStr

from app.providers.anthropic_body import LABEL, encode_body
from app.providers.base import (
    FirstToken,
    InvalidResponseError,
    ModelRequest,
    ModelResponse,
    OnFirstToken,
    ToolCall,
)
from app.providers.events import Event
from app.providers.http import StreamClient
from app.providers.sse import decode_json, key_for, open_sse, stream_error

API_VERSION = "2023-06-01"


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
