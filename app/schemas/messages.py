"""Message content as clients send it (MessageCreate) and as Batchline stores it (Message)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    ValidationInfo,
    field_validator,
    model_validator,
)

from app.schemas.common import Lenient
from app.schemas.images import SOURCE_TAGS, ImageSource
from app.schemas.limits import MAX_CONTENT_PARTS, MAX_TOOLS, Description, Id, Name, OutputLines, Text

#: A text field of a message: bounded, so one field cannot make a worker allocate without limit.
MessageText = Text


class TextPart(Lenient):
    type: Literal["text"] = "text"
    text: MessageText


class ImagePart(Lenient):
    type: Literal["image"]
    source: ImageSource


def _type_or(default: str, *kinds: str) -> Discriminator:
    """Tells union members apart by "type" (`default` when absent); an unknown type is refused
    with a sentence naming the known ones, never echoing the one sent."""

    def discriminate(value: Any) -> str:
        kind = value.get("type") if isinstance(value, dict) else getattr(value, "type", None)
        return kind or default

    known = ", ".join(f'"{kind}"' for kind in (default, *kinds))
    return Discriminator(discriminate, custom_error_type="union_type",
                         custom_error_message=f'"type" must be one of {known}')


ContentPart = Annotated[Annotated[TextPart, Tag("text")] | Annotated[ImagePart, Tag("image")],
                        _type_or("text", "image")]
#: A message's content: one string, or a list of text and image parts.
Content = Annotated[
    Annotated[MessageText, Tag("string")]
    | Annotated[list[ContentPart], Field(max_length=MAX_CONTENT_PARTS), Tag("parts")],
    Discriminator(lambda value: "string" if isinstance(value, str) else "parts" if isinstance(value, list) else None,
                  custom_error_type="content", custom_error_message="must be a string or a list of content parts"),
]


class MessageCreate(Lenient):
    type: Literal["message"] | None = "message"
    role: Literal["user", "system", "assistant"]
    content: Content
    name: Name | None = None
    otid: Id | None = None
    sender_id: Id | None = None

    @field_validator("content")
    @classmethod
    def _images_only_from_the_user(cls, value: str | list[Any], info: ValidationInfo) -> str | list[Any]:
        # Neither Chat Completions nor Anthropic takes an image in an assistant turn, and
        # dropping it would answer as if it had been seen.
        if info.data.get("role") == "assistant" and not isinstance(value, str) \
                and any(isinstance(part, ImagePart) for part in value):
            raise ValueError("images are accepted in user and system messages only, not in assistant messages")
        return value


class ApprovalReturn(Lenient):
    """The client's decision on one tool call awaiting approval."""

    type: Literal["approval"] = "approval"
    tool_call_id: Id
    approve: bool
    reason: Description | None = None


class ToolReturnItem(Lenient):
    """The result of a client-side tool the client ran itself."""

    type: Literal["tool"] = "tool"
    tool_call_id: Id
    tool_return: Text
    status: Literal["success", "error"] = "success"
    stdout: OutputLines | None = None
    stderr: OutputLines | None = None


#: Tags of the discriminated unions of this module, by what pydantic puts them after in an error
#: location (a list index, or the field's name): requests.0.messages.0.message.role, where they
#: only confuse a client.
UNION_TAGS = frozenset({"message", "approval", "tool_return", "tool", "text", "image"})
UNION_TAGS_AFTER_FIELD = {"content": frozenset({"string", "parts"}), "input": frozenset({"string", "parts"}),
                          "source": SOURCE_TAGS}


Approval = Annotated[Annotated[ApprovalReturn, Tag("approval")] | Annotated[ToolReturnItem, Tag("tool")],
                     _type_or("approval", "tool")]


class ApprovalCreate(Lenient):
    """Resumes a run paused with `requires_approval` (Letta's ApprovalCreate)."""

    type: Literal["approval"]
    approvals: list[Approval] | None = Field(None, max_length=MAX_TOOLS)
    #: Deprecated single-decision form, still accepted: one decision for the pending call(s).
    approve: bool | None = None
    approval_request_id: Id | None = None
    reason: Description | None = None

    @model_validator(mode="after")
    def _has_a_decision(self) -> ApprovalCreate:
        if not self.approvals and self.approve is None:
            raise ValueError('give "approvals" (or the deprecated "approve")')
        return self


class ToolReturnCreate(Lenient):
    """Results of client-side tools, sent as their own message."""

    type: Literal["tool_return"]
    tool_returns: list[ToolReturnItem] = Field(min_length=1, max_length=MAX_TOOLS)


RequestMessage = Annotated[
    Annotated[MessageCreate, Tag("message")] | Annotated[ApprovalCreate, Tag("approval")]
    | Annotated[ToolReturnCreate, Tag("tool_return")],
    _type_or("message", "approval", "tool_return"),
]


def content_parts(content: str | list[TextPart | ImagePart]) -> list[dict[str, Any]]:
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
