"""Agents: a JSON record, a hash of memory blocks (label -> JSON, so a run can change one block
atomically), and an index ordered by creation for cursor pagination."""

from __future__ import annotations

import json
from typing import Any

import redis

from app.ids import new_id, now_iso
from app.schemas.agents import DEFAULT_SYSTEM_PROMPT, CreateAgent
from app.store import keys
from app.store.pagination import Order, page
from app.tenancy import DEFAULT_TENANT


class AgentStore:
    def __init__(self, *, client: redis.Redis) -> None:
        self.client = client

    def create(self, request: CreateAgent, *, tenant: str = DEFAULT_TENANT) -> dict[str, Any]:
        agent_id = new_id("agent")
        created = now_iso()
        llm_config = request.resolved_llm_config()
        record = {
            "id": agent_id,
            "name": request.name or f"agent-{agent_id[6:14]}",
            "system": request.system if request.system is not None else DEFAULT_SYSTEM_PROMPT,
            "description": request.description,
            "model": f"{llm_config['model_endpoint_type']}/{llm_config['model']}",
            "llm_config": llm_config,
            "tools": request.tools,
            "tool_rules": [rule.model_dump(exclude_none=True) for rule in request.tool_rules],
            "tags": request.tags,
            "metadata": request.metadata,
            "created_at": created,
            "updated_at": created,
            "created_by_id": tenant,
        }
        blocks = {
            block.label: json.dumps({
                "id": new_id("block"), "label": block.label, "value": block.value, "limit": block.limit,
                "description": block.description, "position": position,
            })
            for position, block in enumerate(request.memory_blocks)
        }
        seq = self.client.incr(keys.SEQ)
        with self.client.pipeline(transaction=True) as pipe:
            pipe.set(keys.agent(agent_id), json.dumps(record))
            if blocks:
                pipe.hset(keys.agent_blocks(agent_id), mapping=blocks)
            pipe.zadd(keys.AGENTS, {agent_id: seq})
            pipe.zadd(keys.tenant_agents(tenant), {agent_id: seq})
            pipe.execute()
        return self._with_blocks(record, blocks)

    def get(self, agent_id: str) -> dict[str, Any] | None:
        return self.get_full([agent_id])[0]

    def get_full(self, agent_ids: list[str]) -> list[dict[str, Any] | None]:
        """Agents with their blocks, in order (None where missing), in one round trip."""
        with self.client.pipeline(transaction=False) as pipe:
            for agent_id in agent_ids:
                pipe.get(keys.agent(agent_id))
                pipe.hgetall(keys.agent_blocks(agent_id))
            replies = pipe.execute()
        return [None if raw is None else self._with_blocks(json.loads(raw), blocks)
                for raw, blocks in zip(replies[::2], replies[1::2], strict=True)]

    def blocks(self, agent_id: str) -> dict[str, dict[str, Any]]:
        """The agent's memory blocks now, by label."""
        return {label: json.loads(raw) for label, raw in self.client.hgetall(keys.agent_blocks(agent_id)).items()}

    def get_many(self, agent_ids: list[str]) -> dict[str, dict[str, Any]]:
        """Agents by id (the missing ones are absent), in two round trips whatever the count."""
        ids = list(dict.fromkeys(agent_ids))
        with self.client.pipeline(transaction=False) as pipe:
            for agent_id in ids:
                pipe.get(keys.agent(agent_id))
            raws = pipe.execute()
        return {agent_id: json.loads(raw) for agent_id, raw in zip(ids, raws, strict=True) if raw is not None}

    def list(self, *, tenant: str, after: str | None, before: str | None, limit: int, order: Order,
             name: str | None = None) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = []
        cursor_after, cursor_before = after, before
        while len(found) < limit:
            ids = page(self.client, keys.tenant_agents(tenant), after=cursor_after, before=cursor_before,
                       limit=limit, order=order)
            if not ids:
                break
            backward = cursor_before is not None and cursor_after is None
            matches = [agent for agent in self.get_full(ids)
                       if agent is not None and (name is None or agent["name"] == name)]
            # Walking back from `before`, each further page comes earlier in the answer.
            found = matches + found if backward else found + matches
            if name is None or len(ids) < limit:
                break
            if backward:
                cursor_before = ids[0]
            else:
                cursor_after = ids[-1]
        return found[-limit:] if cursor_before is not None and cursor_after is None else found[:limit]

    def delete(self, agent_id: str, *, tenant: str = DEFAULT_TENANT) -> bool:
        """Forget the agent; its messages stay readable through the batches that made them."""
        with self.client.pipeline(transaction=True) as pipe:
            pipe.delete(keys.agent(agent_id), keys.agent_blocks(agent_id), keys.agent_messages(agent_id),
                        keys.agent_pending_approval(agent_id))
            pipe.zrem(keys.AGENTS, agent_id)
            pipe.zrem(keys.tenant_agents(tenant), agent_id)
            deleted, *_ = pipe.execute()
        return bool(deleted)

    @staticmethod
    def from_stored(record: dict[str, Any], blocks: dict[str, str]) -> dict[str, Any]:
        """The agent as `get` answers it, from its record and its blocks hash as read."""
        return AgentStore._with_blocks(record, blocks)

    @staticmethod
    def _with_blocks(record: dict[str, Any], blocks: dict[str, str]) -> dict[str, Any]:
        ordered = sorted((json.loads(raw) for raw in blocks.values()), key=lambda block: block["position"])
        return {**record, "blocks": ordered}
