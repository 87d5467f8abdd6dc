"""OpenAI Chat Completions (and compatible servers: vLLM, DeepSeek, Ollama, OpenRouter), streamed."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

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

LABEL = "OpenAI"


class OpenAIProvider:
    def __init__(self, *, client: StreamClient, base_url: str, api_key: str | SecretStr | None) -> None:
        self._client = client
        self._base_url = base_url
        # Kept wrapped when given a SecretStr: unwrapped only while building the headers.
        self._api_key = api_key

    async def stream(self, request: ModelRequest, *, on_first_token: OnFirstToken) -> ModelResponse:
        url = chat_completions_url(request.endpoint or self._base_url)
        key, auth_hint = key_for(url, self._base_url, self._api_key)
        headers = {"Accept": "text/event-stream"}
        if key:
            headers["Authorization"] = f"Bearer {key}"
        async with open_sse(self._client, url, label=LABEL, body=encode_body(request, url),
                            headers=headers, secrets=(key,), auth_hint=auth_hint) as stream:
            acc = _Accumulator(on_first_token)
            async for events in stream:
                if acc.feed_events(events):
                    break
        return acc.result()


def chat_completions_url(base: str) -> str:
    base = base.rstrip("/")
    return base if base.endswith("/chat/completions") else f"{base}/chat/completions"


def build_body(request: ModelRequest, url: str = "") -> dict[str, Any]:
    """The request body; what is sent is `encode_body`'s encoding of it."""
    tools = {"tools": [_tool(t) for t in request.tools]} if request.tools else {}
    return {"messages": _messages(request), **tools, **_options(request, url)}


def encode_body(request: ModelRequest, url: str = "") -> bytes:
    """`build_body` as JSON, each turn encoded once per process (app/providers/wire.py)."""
    turns = [m.wire.get(LABEL) or kept(m.wire, LABEL, m, _encoded_message) for m in request.messages]
    if request.system:
        turns.insert(0, encode({"role": "system", "content": request.system}))
    tools = [kept(t.wire, LABEL, t, lambda t: encode(_tool(t))) for t in request.tools]
    return join_body(turns, tools, _options(request, url))


def _encoded_message(m: ChatMessage) -> bytes:
    return encode(_message(m))


def _tool(t: ToolSpec) -> dict[str, Any]:
    return {"type": "function", "function": {"name": t.name, "description": t.description, "parameters": t.parameters}}


def _options(request: ModelRequest, url: str) -> dict[str, Any]:
    """Everything of the body but the messages and tools."""
    body: dict[str, Any] = {"model": request.model, "stream": True, "stream_options": {"include_usage": True}}
    # OpenAI refuses tool_choice without tools, so it only goes along with them.
    if request.tools and request.tool_choice is not None:
        body["tool_choice"] = request.tool_choice
    if request.temperature is not None:
        body["temperature"] = request.temperature
    if request.max_tokens is not None:
        # api.openai.com deprecated max_tokens and its reasoning models refuse it; vLLM, Ollama,
        # DeepSeek and most other compatible servers only (or best) understand max_tokens.
        host = urlsplit(url).hostname or ""
        name = "max_completion_tokens" if host.endswith("api.openai.com") else "max_tokens"
        body[name] = request.max_tokens
    return body


def _messages(request: ModelRequest) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    if request.system:
        out.append({"role": "system", "content": request.system})
    out.extend(_message(m) for m in request.messages)
    return out


def _message(m: ChatMessage) -> dict[str, Any]:
    if m.role == "tool":
        # Chat Completions has no error flag on tool results: the text itself must say so.
        return {"role": "tool", "tool_call_id": m.tool_call_id or "", "content": m.text}
    if m.role == "assistant" and m.tool_calls:
        return {
            "role": "assistant",
            # OpenAI wants null rather than "" beside tool calls.
            "content": m.text or None,
            "tool_calls": [
                {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}
                for c in m.tool_calls
            ],
        }
    if m.images:
        # Parts only when there are images: many compatible servers take nothing but a string.
        return {"role": m.role, "content": [{"type": "text", "text": piece} if isinstance(piece, str)
                                            else _image_part(piece) for piece in text_and_images(m)]}
    # Reasoning is not sent back: OpenAI has no field for it and DeepSeek rejects it in input.
    return {"role": m.role, "content": m.text}


def _image_part(image: ImageInput) -> dict[str, Any]:
    url = image.url if image.kind == "url" else f"data:{image.media_type};base64,{image.data}"
    return {"type": "image_url", "image_url": {"url": url} | ({"detail": image.detail} if image.detail else {})}


@dataclass
class _PartialCall:
    id: str = ""
    name: str = ""
    arguments: list[str] = field(default_factory=list)


class _Accumulator:
    def __init__(self, on_first_token: OnFirstToken) -> None:
        self._first_token = FirstToken(on_first_token)
        self.done = False
        self._text: list[str] = []
        self._reasoning: list[str] = []
        self._calls: dict[int, _PartialCall] = {}
        self._finish: str | None = None
        self._prompt_tokens: int | None = None
        self._completion_tokens: int | None = None

    def feed_events(self, events: list[Event]) -> bool:
        """Take one network read's events; True at [DONE] (what follows it is not read)."""
        for _, data in events:
            if data == b"[DONE]" or data.strip() == b"[DONE]":
                self.done = True
                return True
            self.feed(decode_json(data, LABEL, "chunk"))
        return False

    def feed(self, chunk: dict[str, Any]) -> None:
        if chunk.get("error"):
            raise stream_error(LABEL, chunk["error"])
        if chunk.get("object") == "error":  # vLLM's shape: the error fields at the top level
            raise stream_error(LABEL, chunk)
        usage = chunk.get("usage")
        if isinstance(usage, dict):
            self._prompt_tokens = usage.get("prompt_tokens", self._prompt_tokens)
            self._completion_tokens = usage.get("completion_tokens", self._completion_tokens)
        for choice in chunk.get("choices") or ():
            if not isinstance(choice, dict):
                raise InvalidResponseError(f"{LABEL} stream carried a malformed choice: {choice!r}")
            self._feed_delta(choice.get("delta") or {})
            if choice.get("finish_reason"):
                self._finish = choice["finish_reason"]

    def _feed_delta(self, delta: dict[str, Any]) -> None:
        content = delta.get("content")
        if isinstance(content, str) and content:
            self._first_token()
            self._text.append(content)
        # vLLM and DeepSeek say reasoning_content, newer vLLM and OpenRouter say reasoning; some
        # send both with the same text, so the first one present wins.
        reasoning = delta.get("reasoning_content") or delta.get("reasoning")
        if isinstance(reasoning, str) and reasoning:
            self._first_token()
            self._reasoning.append(reasoning)
        for position, raw in enumerate(delta.get("tool_calls") or ()):
            if not isinstance(raw, dict):
                raise InvalidResponseError(f"{LABEL} stream carried a malformed tool call: {raw!r}")
            index = raw.get("index", position)
            call = self._calls.setdefault(index, _PartialCall())
            fn = raw.get("function") or {}
            if raw.get("id"):
                call.id = raw["id"]
            # The name arrives once; some servers repeat it on every fragment.
            if fn.get("name") and not call.name:
                call.name = fn["name"]
            if fn.get("arguments"):
                call.arguments.append(fn["arguments"])
            if raw.get("id") or fn.get("name") or fn.get("arguments"):
                self._first_token()

    def result(self) -> ModelResponse:
        if not self.done and self._finish is None:
            raise InvalidResponseError(f"{LABEL} stream ended before [DONE] or a finish_reason")
        calls = []
        for index in sorted(self._calls):
            partial = self._calls[index]
            if not partial.name:
                raise InvalidResponseError(f"{LABEL} streamed a tool call without a name (index {index})")
            calls.append(ToolCall(id=partial.id or f"call_{index}", name=partial.name,
                                  arguments="".join(partial.arguments)))
        text, reasoning = "".join(self._text), "".join(self._reasoning)
        if not text and not reasoning and not calls:
            raise InvalidResponseError(f"{LABEL} stream carried no content, reasoning or tool calls")
        return ModelResponse(text=text, reasoning=reasoning, tool_calls=calls, finish_reason=self._finish,
                             prompt_tokens=self._prompt_tokens, completion_tokens=self._completion_tokens)
