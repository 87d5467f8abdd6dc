"""What the model sees: the system prompt with the agent's memory blocks compiled in, then the
agent's history and the request's input as provider-neutral chat messages."""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import replace
from typing import Any

from app.providers.base import ChatMessage, ImageInput, ToolCall


def compile_system_prompt(system: str, blocks: list[dict[str, Any]]) -> str:
    if not blocks:
        return system
    sections = []
    for block in blocks:
        label = block["label"]
        description = f"<description>{block['description']}</description>\n" if block.get("description") else ""
        sections.append(
            f"<{label}>\n{description}"
            f"<metadata>chars_current={len(block['value'])} chars_limit={block['limit']}</metadata>\n"
            f"<value>\n{block['value']}\n</value>\n</{label}>"
        )
    return f"{system}\n\n<memory_blocks>\n" + "\n".join(sections) + "\n</memory_blocks>"


def text_of(message: dict[str, Any]) -> str:
    return "".join(part.get("text", "") for part in message.get("content") or [] if part.get("type") == "text")


#: What the model reads for a call whose result was never recorded (providers refuse a call
#: without one).
MISSING_RESULT = "Error: no result was recorded for this tool call."


#: Bytes of turn text (and image data) a TurnCache holds, by default, each turn counted twice:
#: itself and the request-body JSON a provider keeps on it (`ChatMessage.wire`).
DEFAULT_TURN_CACHE_MAX_BYTES = 16 * 1024 * 1024
#: A turn larger than this is converted every time rather than cached: converting it costs
#: little next to sending it, and it would crowd out many small turns.
TURN_CACHE_MAX_TURN_BYTES = 256 * 1024
#: The id of the notice that stands in for an omitted message: its text varies, so never cached.
OMITTED_NOTICE_ID = "message-omitted"


class TurnCache:
    """Chat turns of user, system and assistant messages, by message id, so that the history
    every run of an agent resends is converted once per process, not once per run. A stored
    message never changes, so its turn never does. Bounded by bytes of text, oldest out first."""

    def __init__(self, *, max_bytes: int = DEFAULT_TURN_CACHE_MAX_BYTES) -> None:
        self.max_bytes = max_bytes
        self._turns: OrderedDict[str, tuple[ChatMessage, int]] = OrderedDict()
        self._bytes = 0

    def turn(self, message: dict[str, Any]) -> ChatMessage:
        message_id = message.get("id")
        cached = self._turns.get(message_id) if message_id else None
        if cached is not None:  # eviction is oldest first: an agent's history in use comes back
            return cached[0]
        turn = _turn(message)
        # Twice: the provider's encoding of the turn (ChatMessage.wire) is about as long again.
        size = 2 * (len(turn.text) + sum(len(image.data) + len(image.url) for image in turn.images)) + 100
        if message_id and message_id != OMITTED_NOTICE_ID and size <= TURN_CACHE_MAX_TURN_BYTES:
            self._turns[message_id] = (turn, size)
            self._bytes += size
            while self._bytes > self.max_bytes and self._turns:
                _, (_, evicted) = self._turns.popitem(last=False)
                self._bytes -= evicted
        return turn


def _turn(message: dict[str, Any]) -> ChatMessage:
    role = message["role"]
    if role == "user":
        return _user_turn(message)
    if role == "system":
        return _user_turn(message, prefix="[system message] ")
    return _assistant_turn(message)


def to_chat(messages: list[dict[str, Any]], *, cache: TurnCache | None = None) -> list[ChatMessage]:
    """Stored messages as chat turns every provider accepts.

    System-role input becomes a labelled user turn (not every provider takes system turns
    mid-conversation); the images of user and system input go along, in their place among the
    text, every time their message is in the window; tool calls awaiting approval join the
    assistant turn that made them; approval answers are not sent (their tool results are); every
    tool result sits right after the turn that made its call, even when another run of the agent
    committed in between; a window of history that starts mid-conversation is cut to its first
    user turn, and results whose call fell out of the window are dropped. With a `cache`, each
    stored message is converted once per process.
    """
    convert = cache.turn if cache is not None else _turn
    turns: list[ChatMessage] = []
    results: dict[int, dict[str, ChatMessage]] = {}  # assistant turn index -> call id -> result
    turn_of_call: dict[str, int] = {}
    for message in messages:
        role = message["role"]
        if not turns and role not in ("user", "system"):
            continue
        if role in ("user", "system"):
            turns.append(convert(message))
        elif role == "assistant":
            turns.append(convert(message))
            if turns[-1].tool_calls:
                turn_of_call.update((call.id, len(turns) - 1) for call in turns[-1].tool_calls)
        elif role == "approval" and message.get("tool_calls"):
            index = next((i for i in range(len(turns) - 1, -1, -1) if turns[i].role == "assistant"), None)
            if index is not None:
                waiting = _tool_calls(message)
                turns[index] = replace(turns[index], tool_calls=turns[index].tool_calls + waiting)
                turn_of_call.update((call.id, index) for call in waiting)
        elif role == "tool":
            for part in message.get("content") or []:
                if part.get("type") == "tool_return" and part["tool_call_id"] in turn_of_call:
                    results.setdefault(turn_of_call[part["tool_call_id"]], {})[part["tool_call_id"]] = ChatMessage(
                        role="tool", text=part.get("content", ""), tool_call_id=part["tool_call_id"],
                        is_error=bool(part.get("is_error")))
    chat: list[ChatMessage] = []
    for index, turn in enumerate(turns):
        chat.append(turn)
        if not turn.tool_calls:
            continue
        answered = results.get(index, {})
        chat.extend(answered.get(call.id) or ChatMessage(role="tool", text=MISSING_RESULT, tool_call_id=call.id,
                                                         is_error=True)
                    for call in turn.tool_calls)
    return chat


def _user_turn(message: dict[str, Any], prefix: str = "") -> ChatMessage:
    texts, images, length = [prefix], [], len(prefix)
    for part in message.get("content") or []:
        if part.get("type") == "text":
            texts.append(part.get("text", ""))
            length += len(texts[-1])
        elif part.get("type") == "image":
            images.append(_image(part.get("source") or {}, at=length))
    return ChatMessage(role="user", text="".join(texts), images=tuple(images))


def _image(source: dict[str, Any], *, at: int) -> ImageInput:
    """A stored (API-validated) image source; a "letta" source is sent by the data it carries."""
    if source.get("type") == "url":
        return ImageInput(kind="url", at=at, url=source.get("url", ""), detail=source.get("detail"))
    return ImageInput(kind="base64", at=at, media_type=source.get("media_type") or "", data=source.get("data") or "",
                      detail=source.get("detail"))


def _tool_calls(message: dict[str, Any]) -> tuple[ToolCall, ...]:
    return tuple(ToolCall(id=call["id"], name=call["function"]["name"], arguments=call["function"]["arguments"])
                 for call in message.get("tool_calls") or [])


def _assistant_turn(message: dict[str, Any]) -> ChatMessage:
    reasoning = next((p for p in message.get("content") or [] if p.get("type") == "reasoning"), None)
    return ChatMessage(role="assistant", text=text_of(message), tool_calls=_tool_calls(message),
                       reasoning=reasoning["reasoning"] if reasoning else "",
                       reasoning_signature=reasoning.get("signature") if reasoning else None)
