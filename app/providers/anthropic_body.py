"""The Anthropic Messages API request body, built (`build_body`, for reading and tests) and
encoded from the pieces kept on the turns (`encode_body`, what is sent: app/providers/wire.py)."""

from __future__ import annotations

import json
from typing import Any

from app.providers.base import ChatMessage, ImageInput, ModelRequest, ToolSpec, text_and_images
from app.providers.wire import encode, join_body, kept

#: The key of this provider's encodings in ChatMessage.wire and ToolSpec.wire.
LABEL = "Anthropic"
#: Anthropic requires max_tokens; this is what a request without one gets.
DEFAULT_MAX_TOKENS = 4096
#: Anthropic's smallest accepted thinking budget.
MIN_THINKING_BUDGET = 1024


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
    turns: list[bytes] = []
    group: list[ChatMessage] = []  # neighbours of one role, which make one turn
    for m in request.messages:
        if not _encoded_blocks(m):
            continue  # Anthropic rejects empty content
        if group and _role(group[0]) != _role(m):
            turns.append(_encoded_turn(group))
            group = []
        group.append(m)
    if group:
        turns.append(_encoded_turn(group))
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
    turns: list[dict[str, Any]] = []
    for m in messages:
        role = _role(m)
        blocks = _blocks(m)
        if not blocks:
            continue  # Anthropic rejects empty content
        if turns and turns[-1]["role"] == role:
            turns[-1]["content"].extend(blocks)
        else:
            turns.append({"role": role, "content": blocks})
    for turn in turns:
        if turn["role"] == "user":
            # tool_result blocks must come first in their user turn.
            turn["content"].sort(key=lambda b: b["type"] != "tool_result")
    return turns


def _role(m: ChatMessage) -> str:
    return "assistant" if m.role == "assistant" else "user"


#: The key of a message's own turn (when no neighbour of its role joins it) in ChatMessage.wire.
_SOLO = f"{LABEL} turn"


def _encoded_turn(group: list[ChatMessage]) -> bytes:
    """build_messages' turn of `group`, from the messages' kept encodings."""
    if len(group) == 1:
        found = group[0].wire.get(_SOLO)
        if found is None:
            found = group[0].wire[_SOLO] = _join_turn(_role(group[0]), _encoded_blocks(group[0]))
        return found
    return _join_turn(_role(group[0]), [pair for m in group for pair in _encoded_blocks(m)])


def _join_turn(role: str, pairs: list[tuple[bool, bytes]]) -> bytes:
    if role == "user" and len(pairs) > 1:
        pairs = sorted(pairs, key=lambda pair: not pair[0])  # tool_result blocks first, as above
    return b'{"role":"%s","content":[%s]}' % (role.encode(), b",".join(block for _, block in pairs))


def _encoded_blocks(m: ChatMessage) -> list[tuple[bool, bytes]]:
    """(is a tool result, encoded block) of each of the message's blocks, kept on the message."""
    found = m.wire.get(LABEL)
    return found if found is not None else kept(m.wire, LABEL, m, _encode_blocks)


def _encode_blocks(m: ChatMessage) -> list[tuple[bool, bytes]]:
    return [(b["type"] == "tool_result", encode(b)) for b in _blocks(m)]


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
