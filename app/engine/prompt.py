"""What the model sees: the system prompt with the agent's memory blocks compiled in, then the
agent's history and the request's input as provider-neutral chat messages."""

from __future__ import annotations

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
    """Stored messages as chat turns (system-role input becomes a labelled user turn, since not
    every provider accepts system turns mid-conversation)."""
    chat: list[ChatMessage] = []
    for message in messages:
        role = message["role"]
        if role == "user":
            chat.append(ChatMessage(role="user", text=text_of(message)))
        elif role == "system":
            chat.append(ChatMessage(role="user", text=f"[system message] {text_of(message)}"))
        elif role == "assistant":
            reasoning = next((p for p in message.get("content") or [] if p.get("type") == "reasoning"), None)
            chat.append(ChatMessage(
                role="assistant", text=text_of(message),
                tool_calls=tuple(
                    ToolCall(id=call["id"], name=call["function"]["name"], arguments=call["function"]["arguments"])
                    for call in message.get("tool_calls") or []
                ),
                reasoning=reasoning["reasoning"] if reasoning else "",
                reasoning_signature=reasoning.get("signature") if reasoning else None,
            ))
        elif role == "tool":
            for part in message.get("content") or []:
                if part.get("type") == "tool_return":
                    chat.append(ChatMessage(role="tool", text=part.get("content", ""),
                                            tool_call_id=part["tool_call_id"], is_error=bool(part.get("is_error"))))
    return chat
