"""What every model provider speaks: a provider-neutral request, the assembled response of one
streamed call, and the errors that decide an item's stop_reason.

A provider streams one model call and assembles it; it reports the first streamed token of any
kind (text, reasoning or tool call) through `on_first_token` the moment it arrives, so the
caller can time it. Cancelling the awaiting task closes the HTTP stream mid-way.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol


@dataclass(frozen=True)
class ToolSpec:
    name: str
    description: str = ""
    #: JSON Schema of the arguments object.
    parameters: dict[str, Any] = field(default_factory=lambda: {"type": "object", "properties": {}})
    #: The providers' encoded forms of this tool, by provider, made on first use (see ChatMessage.wire).
    wire: dict[str, bytes] = field(default_factory=dict, init=False, repr=False, compare=False)


@dataclass(frozen=True)
class ToolCall:
    id: str
    name: str
    #: The raw JSON text the model produced (may be invalid JSON: the caller judges).
    arguments: str


@dataclass(frozen=True)
class ImageInput:
    """An image of a user turn: inline base64 data, or a URL the provider fetches itself.

    It holds the stored message's own strings, so an image in history costs no copy until a
    provider serialises its request body.
    """

    kind: Literal["base64", "url"]
    #: Where the image sits in its turn's `text` (a character offset): text and images keep the
    #: client's order.
    at: int = 0
    media_type: str = ""
    data: str = ""
    url: str = ""
    #: OpenAI's "low" / "high" / "auto"; others ignore it.
    detail: str | None = None


@dataclass(frozen=True)
class ChatMessage:
    """One turn of the conversation, provider-neutral."""

    role: Literal["user", "assistant", "tool"]
    text: str = ""
    #: Images of a user turn, by offset in `text`.
    images: tuple[ImageInput, ...] = ()
    tool_calls: tuple[ToolCall, ...] = ()
    #: For role "tool": which call this answers, and whether the tool failed.
    tool_call_id: str | None = None
    is_error: bool = False
    #: Anthropic thinking blocks must be sent back with their signature; others ignore it.
    reasoning: str = ""
    reasoning_signature: str | None = None
    #: The providers' encoded (JSON) forms of this turn, by provider, made on first use: a turn of
    #: an agent's history is kept per process (TurnCache) and resent by every run of the agent,
    #: so each provider encodes it once. Not a field of the turn's value: `replace` starts afresh.
    wire: dict[str, Any] = field(default_factory=dict, init=False, repr=False, compare=False)


def text_and_images(message: ChatMessage) -> Iterator[str | ImageInput]:
    """The turn's text pieces and images in the client's order (no empty text pieces)."""
    start = 0
    for image in message.images:
        if image.at > start:
            yield message.text[start:image.at]
            start = image.at
        yield image
    if start < len(message.text):
        yield message.text[start:]


@dataclass(frozen=True)
class ModelRequest:
    #: The provider's own model name (the part after "openai/", "anthropic/", "simulated/").
    model: str
    system: str
    messages: tuple[ChatMessage, ...]
    tools: tuple[ToolSpec, ...] = ()
    #: "required" forces a tool call; None lets the provider default (auto when tools exist).
    tool_choice: Literal["auto", "required"] | None = None
    temperature: float | None = None
    max_tokens: int | None = None
    #: The agent's llm_config.model_endpoint; None means the provider's configured base URL.
    endpoint: str | None = None
    enable_thinking: bool = False


@dataclass
class ModelResponse:
    text: str = ""
    reasoning: str = ""
    reasoning_signature: str | None = None
    tool_calls: list[ToolCall] = field(default_factory=list)
    #: The provider's own finish/stop reason, e.g. "stop", "tool_calls", "end_turn", "tool_use".
    finish_reason: str | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None


class ProviderError(Exception):
    """The provider refused or failed (HTTP error, network error, error event in the stream).

    `retryable` is true for 429, 5xx and network failures; `retry_after_s` carries the
    provider's Retry-After when it sent one. Ends an item with `llm_api_error` once retries
    are spent.
    """

    def __init__(self, message: str, *, status_code: int | None = None, retryable: bool = False,
                 retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.retryable = retryable
        self.retry_after_s = retry_after_s


class InvalidResponseError(Exception):
    """The stream was empty or malformed. Ends an item with `invalid_llm_response`."""


OnFirstToken = Callable[[], None]


class FirstToken:
    """Calls `on_first_token` on the first call only, however many tokens or attempts follow."""

    def __init__(self, on_first_token: OnFirstToken) -> None:
        self._on_first_token = on_first_token
        self.fired = False

    def __call__(self) -> None:
        if not self.fired:
            self.fired = True
            self._on_first_token()


class Provider(Protocol):
    async def stream(self, request: ModelRequest, *, on_first_token: OnFirstToken) -> ModelResponse:
        """Run one streamed model call and return it assembled (one attempt, no retries)."""
        ...
