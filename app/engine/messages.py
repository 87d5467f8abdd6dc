"""Builders of stored messages (the API's `Message` shape)."""

from __future__ import annotations

from typing import Any

from app.ids import DEFAULT_USER_ID, new_id, now_iso
from app.providers.base import ToolCall
from app.schemas.batches import LettaRequest
from app.schemas.messages import content_parts


def new_message(role: str, content: list[dict[str, Any]], *, agent_id: str, batch_item_id: str | None,
                created_by_id: str = DEFAULT_USER_ID, **fields: Any) -> dict[str, Any]:
    """A stored message; `created_by_id` is the tenant that owns the agent."""
    created = now_iso()
    return {
        "id": new_id("message"), "role": role, "content": content, "agent_id": agent_id,
        "batch_item_id": batch_item_id, "model": None, "name": None, "tool_calls": None,
        "tool_call_id": None, "tool_returns": None, "step_id": None, "otid": None, "sender_id": None,
        "is_err": None, "created_at": created, "updated_at": created, "created_by_id": created_by_id,
        **fields,
    }


def input_messages(request: LettaRequest, *, agent_id: str, batch_item_id: str | None,
                   created_by_id: str = DEFAULT_USER_ID) -> list[dict[str, Any]]:
    """The request's input as stored messages: `input` is one user message."""
    if request.input is not None:
        return [new_message("user", content_parts(request.input), agent_id=agent_id, batch_item_id=batch_item_id,
                            created_by_id=created_by_id)]
    return [
        new_message(message.role, content_parts(message.content), agent_id=agent_id, batch_item_id=batch_item_id,
                    created_by_id=created_by_id, name=message.name, otid=message.otid, sender_id=message.sender_id)
        for message in request.plain_messages
    ]


def tool_call_dicts(calls: list[ToolCall]) -> list[dict[str, Any]] | None:
    return [{"id": call.id, "type": "function", "function": {"name": call.name, "arguments": call.arguments}}
            for call in calls] or None


def tool_return_message(call: ToolCall, text: str, *, is_error: bool, agent_id: str, batch_item_id: str | None,
                        step_id: str | None) -> dict[str, Any]:
    return new_message(
        "tool", [{"type": "tool_return", "tool_call_id": call.id, "content": text, "is_error": is_error}],
        agent_id=agent_id, batch_item_id=batch_item_id, name=call.name, tool_call_id=call.id, step_id=step_id,
        tool_returns=[{"tool_call_id": call.id, "status": "error" if is_error else "success", "func_response": text,
                       "stdout": None, "stderr": None}],
    )


def approval_request_message(calls: list[ToolCall], *, agent_id: str, batch_item_id: str | None,
                             step_id: str | None) -> dict[str, Any]:
    return new_message("approval", [], agent_id=agent_id, batch_item_id=batch_item_id, step_id=step_id,
                       tool_calls=tool_call_dicts(calls), tool_call_id=calls[0].id)


def approval_response_message(approvals: list[dict[str, Any]], *, request_id: str, agent_id: str,
                              batch_item_id: str | None, step_id: str | None) -> dict[str, Any]:
    decisions = {a.get("approve") for a in approvals if a["type"] == "approval"}
    approve = decisions.pop() if len(decisions) == 1 else None
    reasons = [a["reason"] for a in approvals if a["type"] == "approval" and not a["approve"] and a.get("reason")]
    return new_message("approval", [], agent_id=agent_id, batch_item_id=batch_item_id, step_id=step_id,
                       approvals=approvals,
                       approve=approve, approval_request_id=request_id, denial_reason="; ".join(reasons) or None)
