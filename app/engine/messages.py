"""Builders of stored messages (the API's `Message` shape)."""

from __future__ import annotations

from typing import Any

from app.ids import DEFAULT_USER_ID, new_id, now_iso
from app.schemas.batches import LettaRequest
from app.schemas.messages import content_parts


def new_message(role: str, content: list[dict[str, Any]], *, agent_id: str, batch_item_id: str | None,
                **fields: Any) -> dict[str, Any]:
    created = now_iso()
    return {
        "id": new_id("message"), "role": role, "content": content, "agent_id": agent_id,
        "batch_item_id": batch_item_id, "model": None, "name": None, "tool_calls": None,
        "tool_call_id": None, "tool_returns": None, "step_id": None, "otid": None, "sender_id": None,
        "is_err": None, "created_at": created, "updated_at": created, "created_by_id": DEFAULT_USER_ID,
        **fields,
    }


def input_messages(request: LettaRequest, *, agent_id: str, batch_item_id: str | None) -> list[dict[str, Any]]:
    """The request's input as stored messages: `input` is one user message."""
    if request.input is not None:
        return [new_message("user", content_parts(request.input), agent_id=agent_id, batch_item_id=batch_item_id)]
    return [
        new_message(message.role, content_parts(message.content), agent_id=agent_id, batch_item_id=batch_item_id,
                    name=message.name, otid=message.otid, sender_id=message.sender_id)
        for message in request.messages or []
    ]
