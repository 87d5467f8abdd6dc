"""Answers the OpenAPI document declares beside the resources' own models: bare JSON arrays,
the service's probes, and the bodies that are not JSON, so that every status and shape a route
answers is documented (the fuzzing test checks each answer against it)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, RootModel

from app.schemas.agents import AgentState
from app.schemas.batches import BatchItem, BatchJob


class BatchJobs(RootModel[list[BatchJob]]):
    """A page of batches (a bare JSON array)."""


class BatchItems(RootModel[list[BatchItem]]):
    """A page of a batch's requests (a bare JSON array)."""


class AgentStates(RootModel[list[AgentState]]):
    """A page of agents (a bare JSON array)."""


class LettaMessages(RootModel[list[dict[str, Any]]]):
    """Letta messages, each with its `message_type` (a bare JSON array)."""


class LettaResponse(BaseModel):
    """What one synchronous request produced (Letta's LettaResponse)."""

    model_config = ConfigDict(extra="allow")

    messages: list[dict[str, Any]]
    stop_reason: dict[str, Any]
    usage: dict[str, Any]


class AgentDeleted(BaseModel):
    message: str


class Status(BaseModel):
    status: str


class ServiceIndex(BaseModel):
    model_config = ConfigDict(extra="allow")

    name: str
    api: str


def text_body(media_type: str, description: str) -> dict[str, Any]:
    """A response that is not JSON, for flask-openapi3's `responses=`."""
    return {"description": description, "content": {media_type: {"schema": {"type": "string"}}}}


#: gunicorn answers a request line over its `limit_request_line` (4,094 bytes) itself, in HTML.
URI_TOO_LONG = text_body("text/html", "The URL is longer than the server takes (gunicorn, before the app).")
