"""Agents: create, list, retrieve, delete, their message history, and one request run
synchronously through the same engine the workers use."""

from __future__ import annotations

import asyncio
from typing import Any

from flask import jsonify
from flask_openapi3 import APIBlueprint, Tag
from pydantic import BaseModel, Field

from app.api.auth import SECURITY, current_tenant
from app.api.batch_create import check_max_steps
from app.api.errors import ApiError, not_found
from app.engine.letta_view import ViewOptions, to_letta_messages
from app.engine.runner import ApprovalConflict, RequestRunner
from app.providers import ProviderRegistry, make_http_client
from app.providers.limits import ModelLimiter
from app.schemas.agents import AgentListQuery, AgentMessagesQuery, AgentState, CreateAgent
from app.schemas.batches import LettaRequest
from app.schemas.common import Error
from app.schemas.responses import URI_TOO_LONG, AgentDeleted, AgentStates, LettaMessages, LettaResponse
from app.services import services
from app.tenancy import owner_of

agents = APIBlueprint("agents", __name__, url_prefix="/v1/agents", abp_tags=[Tag(name="agents")],
                      abp_responses={"401": Error, "414": URI_TOO_LONG, "422": Error, "429": Error, "503": Error},
                      abp_security=SECURITY)


class AgentPath(BaseModel):
    agent_id: str = Field(max_length=200)


@agents.post("/", responses={200: AgentState}, strict_slashes=False)
def create_agent(body: CreateAgent) -> Any:
    svc = services()
    agent = svc.store.agents.create(body, tenant=current_tenant())
    return jsonify(agent_state(agent, message_ids=[]))


@agents.get("/", responses={200: AgentStates, 400: Error}, strict_slashes=False)
def list_agents(query: AgentListQuery) -> Any:
    svc = services()
    found = svc.store.agents.list(tenant=current_tenant(), after=query.after, before=query.before, limit=query.limit,
                                  order=query.order, name=query.name)
    message_ids = svc.store.messages.recent_ids_many([agent["id"] for agent in found],
                                                     limit=svc.settings.history_max_messages)
    return jsonify([agent_state(agent, message_ids=ids) for agent, ids in zip(found, message_ids, strict=True)])


@agents.get("/<agent_id>", responses={200: AgentState, 404: Error}, strict_slashes=False)
def retrieve_agent(path: AgentPath) -> Any:
    agent = _agent_or_404(path.agent_id)
    return jsonify(agent_state(agent, message_ids=_message_ids(agent["id"])))


@agents.delete("/<agent_id>", responses={200: AgentDeleted, 404: Error}, strict_slashes=False)
def delete_agent(path: AgentPath) -> Any:
    _agent_or_404(path.agent_id)
    if not services().store.agents.delete(path.agent_id, tenant=current_tenant()):
        raise not_found("Agent", path.agent_id)
    return jsonify({"message": f"Agent id={path.agent_id} successfully deleted"})


@agents.get("/<agent_id>/messages", responses={200: LettaMessages, 404: Error, 400: Error})
def list_agent_messages(path: AgentPath, query: AgentMessagesQuery) -> Any:
    """The agent's history as Letta messages (`message_type` union), newest first by default."""
    _agent_or_404(path.agent_id)
    found = services().store.messages.page_for_agent(path.agent_id, after=query.after, before=query.before,
                                                     limit=query.limit, order=query.order)
    return jsonify(to_letta_messages(found, ViewOptions(
        use_assistant_message=query.use_assistant_message,
        assistant_message_tool_name=query.assistant_message_tool_name,
        assistant_message_tool_kwarg=query.assistant_message_tool_kwarg)))


@agents.post("/<agent_id>/messages", responses={200: LettaResponse, 404: Error, 409: Error})
def send_message(path: AgentPath, body: LettaRequest) -> Any:
    """Run one request through the agent now and answer with what it produced (LettaResponse)."""
    svc = services()
    check_max_steps(body, svc.settings.max_steps_ceiling, loc=["max_steps"])
    agent = _agent_or_404(path.agent_id)

    async def run() -> Any:
        async with make_http_client(svc.settings) as client:
            runner = RequestRunner(settings=svc.settings, store=svc.store,
                                   providers=ProviderRegistry(settings=svc.settings, client=client,
                                                              limiter=ModelLimiter.from_settings(
                                                                  svc.settings, svc.store.model_limits)))
            return await runner.run(agent, body)

    try:
        finished = asyncio.run(run())
    except ApprovalConflict as exc:
        raise ApiError(409, str(exc)) from None
    record = finished.record
    produced = record.messages[finished.inputs:]
    letta = to_letta_messages(produced, ViewOptions(
        use_assistant_message=body.use_assistant_message,
        assistant_message_tool_name=body.assistant_message_tool_name,
        assistant_message_tool_kwarg=body.assistant_message_tool_kwarg))
    if body.include_return_message_types is not None:
        letta = [message for message in letta if message["message_type"] in body.include_return_message_types]
    return jsonify({
        "messages": letta,
        "stop_reason": {"message_type": "stop_reason", "stop_reason": record.stop_reason},
        "usage": {"message_type": "usage_statistics",
                  "step_count": sum(1 for message in produced if message["role"] == "assistant")},
    })


def _agent_or_404(agent_id: str) -> dict[str, Any]:
    """The caller's agent; another tenant's answers 404 exactly like one that does not exist."""
    agent = services().store.agents.get(agent_id)
    if agent is None or owner_of(agent["created_by_id"]) != current_tenant():
        raise not_found("Agent", agent_id)
    return agent


def _message_ids(agent_id: str) -> list[str]:
    svc = services()
    return svc.store.messages.recent_ids(agent_id, limit=svc.settings.history_max_messages)


def agent_state(agent: dict[str, Any], *, message_ids: list[str]) -> dict[str, Any]:
    blocks = [{key: value for key, value in block.items() if key != "position"} for block in agent["blocks"]]
    return {
        "id": agent["id"], "agent_type": "letta_v1_agent", "name": agent["name"], "system": agent["system"],
        "description": agent.get("description"), "model": agent["model"], "llm_config": agent["llm_config"],
        "blocks": blocks, "memory": {"blocks": blocks, "agent_type": "letta_v1_agent"},
        "tools": [{"id": f"tool-{name}", "name": name, "tool_type": "letta_core"} for name in agent["tools"]],
        "tool_rules": agent["tool_rules"], "sources": [], "tags": agent["tags"], "metadata": agent["metadata"],
        "created_at": agent["created_at"], "updated_at": agent["updated_at"],
        "created_by_id": agent["created_by_id"], "last_updated_by_id": agent["created_by_id"],
        "message_ids": message_ids,
    }
