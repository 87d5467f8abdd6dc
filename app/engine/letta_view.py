"""Stored messages as the Letta message union (`message_type`: user_message, assistant_message,
reasoning_message, tool_call_message, tool_return_message, approval_*...), as the agent
messages routes return them. One stored message may become several Letta messages; they keep
the stored message's id, so cursors are stored-message ids."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from app.engine.prompt import text_of


def _base(message: dict[str, Any], message_type: str) -> dict[str, Any]:
    return {
        "id": message["id"], "date": message["created_at"], "message_type": message_type,
        "name": message.get("name"), "otid": message.get("otid"), "sender_id": message.get("sender_id"),
        "step_id": message.get("step_id"), "is_err": message.get("is_err"), "run_id": message.get("batch_item_id"),
    }


def to_letta_messages(messages: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    letta: list[dict[str, Any]] = []
    for message in messages:
        role = message["role"]
        if role == "user":
            letta.append(_base(message, "user_message") | {"content": text_of(message)})
        elif role == "system":
            letta.append(_base(message, "system_message") | {"content": text_of(message)})
        elif role == "assistant":
            for part in message.get("content") or []:
                if part.get("type") == "reasoning":
                    letta.append(_base(message, "reasoning_message") | {
                        "reasoning": part.get("reasoning", ""), "signature": part.get("signature"),
                        "source": "reasoner_model"})
            text = text_of(message)
            if text:
                letta.append(_base(message, "assistant_message") | {"content": text})
            for call in message.get("tool_calls") or []:
                tool_call = {"tool_call_id": call["id"], "name": call["function"]["name"],
                             "arguments": call["function"]["arguments"]}
                letta.append(_base(message, "tool_call_message") | {"tool_call": tool_call, "tool_calls": [tool_call]})
        elif role == "tool":
            for part in message.get("content") or []:
                if part.get("type") == "tool_return":
                    letta.append(_base(message, "tool_return_message") | {
                        "tool_call_id": part["tool_call_id"], "tool_return": part.get("content", ""),
                        "status": "error" if part.get("is_error") else "success",
                        "name": message.get("name")})
    return letta
