"""What the model sees: the system prompt with the agent's memory blocks compiled in, then the
agent's history and the request's input as provider-neutral chat messages."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from app.providers.base import ChatMessage, ToolCall


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


def to_chat(messages: list[dict[str, Any]]) -> list[ChatMessage]:
    """Stored messages as chat turns every provider accepts.

    System-role input becomes a labelled user turn (not every provider takes system turns
    mid-conversation); tool calls awaiting approval join the assistant turn that made them;
    approval answers are not sent (their tool results are); a window of history that starts
    mid-conversation is cut to its first user turn, and tool results whose call fell out of the
    window are dropped.
    """
    chat: list[ChatMessage] = []
    calls_seen: set[str] = set()
    for message in messages:
        role = message["role"]
        if not chat and role not in ("user", "system"):
            continue
        if role == "user":
            chat.append(ChatMessage(role="user", text=text_of(message)))
        elif role == "system":
            chat.append(ChatMessage(role="user", text=f"[system message] {text_of(message)}"))
        elif role == "assistant":
            chat.append(_assistant_turn(message))
            calls_seen.update(call.id for call in chat[-1].tool_calls)
        elif role == "approval" and message.get("tool_calls"):
            turn = next((i for i in range(len(chat) - 1, -1, -1) if chat[i].role == "assistant"), None)
            if turn is not None:
                waiting = _tool_calls(message)
                chat[turn] = replace(chat[turn], tool_calls=chat[turn].tool_calls + waiting)
                calls_seen.update(call.id for call in waiting)
        elif role == "tool":
            for part in message.get("content") or []:
                if part.get("type") == "tool_return" and part["tool_call_id"] in calls_seen:
                    chat.append(ChatMessage(role="tool", text=part.get("content", ""),
                                            tool_call_id=part["tool_call_id"], is_error=bool(part.get("is_error"))))
    return chat


def _tool_calls(message: dict[str, Any]) -> tuple[ToolCall, ...]:
    return tuple(ToolCall(id=call["id"], name=call["function"]["name"], arguments=call["function"]["arguments"])
                 for call in message.get("tool_calls") or [])


def _assistant_turn(message: dict[str, Any]) -> ChatMessage:
    reasoning = next((p for p in message.get("content") or [] if p.get("type") == "reasoning"), None)
    return ChatMessage(role="assistant", text=text_of(message), tool_calls=_tool_calls(message),
                       reasoning=reasoning["reasoning"] if reasoning else "",
                       reasoning_signature=reasoning.get("signature") if reasoning else None)
