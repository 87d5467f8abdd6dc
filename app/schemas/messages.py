"""Message content as clients send it (MessageCreate) and as Batchline stores it (Message)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from app.schemas.common import Lenient


class TextPart(Lenient):
    type: Literal["text"] = "text"
    text: str


class ImagePart(Lenient):
    type: Literal["image"]
    source: dict[str, Any]


ContentPart = TextPart | ImagePart


class MessageCreate(Lenient):
    type: Literal["message"] | None = "message"
    role: Literal["user", "system", "assistant"]
    content: str | list[ContentPart]
    name: str | None = None
    otid: str | None = None
    sender_id: str | None = None


def content_parts(content: str | list[ContentPart]) -> list[dict[str, Any]]:
    """Content as a list of typed parts (the stored shape)."""
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    return [part.model_dump(exclude_none=True) for part in content]


class ToolCallFunction(BaseModel):
    name: str
    arguments: str


class MessageToolCall(BaseModel):
    id: str
    type: Literal["function"] = "function"
    function: ToolCallFunction


class Message(BaseModel):
    """A stored message (the SDK's `InternalMessage`)."""

    model_config = ConfigDict(extra="allow")

    id: str = Field(description="message-<uuid4>")
    role: Literal["user", "assistant", "tool", "system", "approval"]
    content: list[dict[str, Any]]
    agent_id: str | None = None
    batch_item_id: str | None = None
    model: str | None = None
    name: str | None = None
    tool_calls: list[MessageToolCall] | None = None
    tool_call_id: str | None = None
    tool_returns: list[dict[str, Any]] | None = None
    step_id: str | None = None
    otid: str | None = None
    sender_id: str | None = None
    is_err: bool | None = None
    created_at: str
    updated_at: str | None = None
    created_by_id: str | None = None

    @field_validator("content", mode="before")
    @classmethod
    def _always_a_list(cls, value: Any) -> Any:
        return [] if value is None else value


class BatchMessages(BaseModel):
    messages: list[Message]
