"""Stored messages as the Letta message union (`message_type`: user_message, assistant_message,
reasoning_message, tool_call_message, tool_return_message, approval_request_message,
approval_response_message, system_message), as the agent routes return them. One stored message
may become several Letta messages; they keep the stored message's id, so cursors stay valid."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from app.engine.prompt import text_of


@dataclass(frozen=True)
class ViewOptions:
    """How a message tool's calls are shown (LettaRequest's use_assistant_message & co.)."""

    use_assistant_message: bool = True
    assistant_message_tool_name: str = "send_message"
    assistant_message_tool_kwarg: str = "message"


def _base(message: dict[str, Any], message_type: str) -> dict[str, Any]:
    return {
        "id": message["id"], "date": message["created_at"], "message_type": message_type,
        "name": message.get("name"), "otid": message.get("otid"), "sender_id": message.get("sender_id"),
        "step_id": message.get("step_id"), "is_err": message.get("is_err"), "run_id": message.get("batch_item_id"),
    }


def _letta_tool_call(call: dict[str, Any]) -> dict[str, Any]:
    return {"tool_call_id": call["id"], "name": call["function"]["name"], "arguments": call["function"]["arguments"]}


def _as_reply(call: dict[str, Any], options: ViewOptions) -> str | None:
    """The reply text of a message-tool call shown as an assistant message, else None."""
    if not options.use_assistant_message or call["function"]["name"] != options.assistant_message_tool_name:
        return None
    try:
        arguments = json.loads(call["function"]["arguments"] or "{}")
    except json.JSONDecodeError:
        return None
    reply = arguments.get(options.assistant_message_tool_kwarg) if isinstance(arguments, dict) else None
    return reply if isinstance(reply, str) else None


def to_letta_messages(messages: Iterable[dict[str, Any]], options: ViewOptions | None = None) -> list[dict[str, Any]]:
    options = options or ViewOptions()
    letta: list[dict[str, Any]] = []
    for message in messages:
        role = message["role"]
        if role == "user":
            letta.append(_base(message, "user_message") | {"content": _user_content(message)})
        elif role == "system":
            letta.append(_base(message, "system_message") | {"content": text_of(message)})
        elif role == "assistant":
            letta.extend(_assistant(message, options))
        elif role == "tool":
            letta.extend(_tool_returns(message, options))
        elif role == "approval" and message.get("tool_calls"):
            calls = [_letta_tool_call(call) for call in message["tool_calls"]]
            letta.append(_base(message, "approval_request_message") | {"tool_call": calls[0], "tool_calls": calls})
        elif role == "approval":
            letta.append(_base(message, "approval_response_message") | {
                "approvals": message.get("approvals"), "approve": message.get("approve"),
                "approval_request_id": message.get("approval_request_id"), "reason": message.get("denial_reason")})
    return letta


def _user_content(message: dict[str, Any]) -> str | list[dict[str, Any]]:
    """Text as one string, as Letta shows it; the parts themselves when images are among them."""
    parts = message.get("content") or []
    if any(part.get("type") == "image" for part in parts):
        return [part for part in parts if part.get("type") in ("text", "image")]
    return text_of(message)


def _assistant(message: dict[str, Any], options: ViewOptions) -> list[dict[str, Any]]:
    shown = []
    for part in message.get("content") or []:
        if part.get("type") == "reasoning":
            shown.append(_base(message, "reasoning_message") | {
                "reasoning": part.get("reasoning", ""), "signature": part.get("signature"), "source": "reasoner_model"})
    if text := text_of(message):
        shown.append(_base(message, "assistant_message") | {"content": text})
    for call in message.get("tool_calls") or []:
        reply = _as_reply(call, options)
        if reply is not None:
            shown.append(_base(message, "assistant_message") | {"content": reply})
        else:
            tool_call = _letta_tool_call(call)
            shown.append(_base(message, "tool_call_message") | {"tool_call": tool_call, "tool_calls": [tool_call]})
    return shown


def _tool_returns(message: dict[str, Any], options: ViewOptions) -> list[dict[str, Any]]:
    if options.use_assistant_message and message.get("name") == options.assistant_message_tool_name:
        return []  # the reply already shows as an assistant message
    shown = []
    for part in message.get("content") or []:
        if part.get("type") == "tool_return":
            status = "error" if part.get("is_error") else "success"
            shown.append(_base(message, "tool_return_message") | {
                "tool_call_id": part["tool_call_id"], "tool_return": part.get("content", ""), "status": status,
                "tool_returns": [{"tool_call_id": part["tool_call_id"], "status": status,
                                  "tool_return": part.get("content", ""), "type": "tool"}]})
    return shown
