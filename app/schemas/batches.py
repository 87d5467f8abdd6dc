"""Batches as clients create them (CreateBatch) and as the API returns them (BatchJob)."""

from __future__ import annotations

from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, Field, field_validator, model_validator

from app.schemas.common import Lenient, PageQuery
from app.schemas.limits import (
    MAX_MESSAGES_PER_REQUEST,
    MAX_TAGS,
    MAX_TOOLS,
    Description,
    Id,
    Label,
    Metadata,
    ToolSchema,
)
from app.schemas.messages import ApprovalCreate, Content, MessageCreate, RequestMessage, ToolReturnCreate
from app.vocabulary import BatchStatus, ItemStatus, WaitingFor

MAX_REQUESTS_PER_BATCH = 100_000


class ClientTool(Lenient):
    name: Label = Field(min_length=1)
    description: Description | None = None
    parameters: ToolSchema | None = None


class LettaRequest(Lenient):
    """One request to an agent (the body of POST /v1/agents/{id}/messages)."""

    messages: list[RequestMessage] | None = Field(None, max_length=MAX_MESSAGES_PER_REQUEST)
    input: Content | None = None
    #: 0 or below ends the request with `max_steps` before any model call (as on Letta); the
    #: ceiling is a setting, checked by the routes (BATCHLINE_MAX_STEPS_CEILING).
    max_steps: int | None = None
    use_assistant_message: bool = True
    assistant_message_tool_name: Label = "send_message"
    assistant_message_tool_kwarg: Label = "message"
    include_return_message_types: list[Label] | None = Field(None, max_length=MAX_TAGS)
    enable_thinking: bool | Label | None = None
    client_tools: list[ClientTool] | None = Field(None, max_length=MAX_TOOLS)

    @model_validator(mode="after")
    def _exactly_one_input(self) -> LettaRequest:
        if (self.messages is None) == (self.input is None):
            raise ValueError('give exactly one of "messages" or "input"')
        if self.messages is not None and not self.messages:
            raise ValueError('"messages" must hold at least one message')
        if self.messages and len(self.messages) > 1 and self.resumption is not None:
            raise ValueError("an approval or tool_return message must be the request's only message")
        return self

    @property
    def resumption(self) -> ApprovalCreate | ToolReturnCreate | None:
        """The approval (or client tool results) this request resumes a paused run with, if any."""
        for message in self.messages or []:
            if isinstance(message, ApprovalCreate | ToolReturnCreate):
                return message
        return None

    @property
    def plain_messages(self) -> list[MessageCreate]:
        return [message for message in self.messages or [] if isinstance(message, MessageCreate)]


class LettaBatchRequest(LettaRequest):
    agent_id: Id = Field(min_length=1)


class CreateBatch(Lenient):
    requests: list[LettaBatchRequest] = Field(min_length=1, max_length=MAX_REQUESTS_PER_BATCH)
    callback_url: str | None = Field(None, max_length=2048)
    metadata: Metadata | None = None

    @field_validator("callback_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("must be an absolute http:// or https:// URL")
        try:
            parts.port  # noqa: B018  (reading it validates it)
        except ValueError:
            raise ValueError("has an invalid port") from None
        return value


class BatchPath(BaseModel):
    batch_id: Id


class BatchMessagesQuery(PageQuery):
    agent_id: Id | None = None


class BatchRequestsQuery(PageQuery):
    order: Literal["asc", "desc"] = "asc"
    status: ItemStatus | None = Field(None, description="Only the requests in this status.")


class RequestCounts(BaseModel):
    total: int
    pending: int
    running: int
    succeeded: int
    errored: int
    cancelled: int
    expired: int


class BatchJob(BaseModel):
    id: str = Field(description="job-<uuid4>")
    agent_id: str | None
    background: bool | None = None
    callback_error: str | None
    callback_sent_at: str | None
    callback_status_code: int | None
    callback_url: str | None
    completed_at: str | None
    created_at: str
    created_by_id: str
    job_type: Literal["batch"] = "batch"
    last_updated_by_id: str
    metadata: dict[str, Any]
    status: BatchStatus
    stop_reason: str | None
    total_duration_ns: int | None
    ttft_ns: int | None
    updated_at: str
    request_counts: RequestCounts


class BatchItem(BaseModel):
    id: str = Field(description="batch_item-<uuid4>")
    batch_id: str
    agent_id: str
    index: int
    status: ItemStatus
    stop_reason: str | None
    ttft_ns: int | None
    total_duration_ns: int | None
    error: str | None
    attempts: int
    started_at: str | None
    completed_at: str | None
    waiting: WaitingFor | None = Field(None, description="what a running request waits for: `model_capacity` "
                                       "(a fleet-wide model limit, or a provider's pause); else null")
