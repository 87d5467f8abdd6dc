"""send_message: for agents that reply through a tool; its `message` is the reply the user sees."""

from __future__ import annotations

from typing import Any

from app.engine.tools.base import Tool, ToolContext

SEND_MESSAGE_NAME = "send_message"


def send_message(ctx: ToolContext, args: dict[str, Any]) -> str:
    return "Sent message successfully."


SEND_MESSAGE = Tool(
    SEND_MESSAGE_NAME, "Send a message to the user. This ends your turn.",
    {"type": "object", "properties": {"message": {"type": "string", "description": "The message to send."}},
     "required": ["message"], "additionalProperties": False},
    send_message,
)
