"""Messages: one JSON value each, indexed per agent (its history), per batch, and per batch and
agent, all scored by the global sequence so every index lists them in creation order."""

from __future__ import annotations

import json
from typing import Any

import redis

from app.store import keys
from app.store.pagination import Order, page


class MessageStore:
    def __init__(self, *, client: redis.Redis) -> None:
        self.client = client

    def get_many(self, message_ids: list[str]) -> list[dict[str, Any]]:
        if not message_ids:
            return []
        raws = self.client.mget([keys.message(message_id) for message_id in message_ids])
        return [json.loads(raw) for raw in raws if raw is not None]

    def page_for_batch(self, batch_id: str, *, agent_id: str | None, after: str | None, before: str | None,
                       limit: int, order: Order) -> list[dict[str, Any]]:
        index = keys.batch_agent_messages(batch_id, agent_id) if agent_id else keys.batch_messages(batch_id)
        return self.get_many(page(self.client, index, after=after, before=before, limit=limit, order=order))

    def page_for_agent(self, agent_id: str, *, after: str | None, before: str | None, limit: int,
                       order: Order) -> list[dict[str, Any]]:
        index = keys.agent_messages(agent_id)
        return self.get_many(page(self.client, index, after=after, before=before, limit=limit, order=order))

    def recent_ids(self, agent_id: str, *, limit: int) -> list[str]:
        """The agent's latest `limit` message ids, oldest first."""
        return self.recent_ids_many([agent_id], limit=limit)[0]

    def recent_ids_many(self, agent_ids: list[str], *, limit: int) -> list[list[str]]:
        if limit <= 0:
            return [[] for _ in agent_ids]
        with self.client.pipeline(transaction=False) as pipe:
            for agent_id in agent_ids:
                pipe.zrange(keys.agent_messages(agent_id), -limit, -1)
            return pipe.execute()

    def recent_for_agent(self, agent_id: str, *, limit: int) -> list[dict[str, Any]]:
        return self.get_many(self.recent_ids(agent_id, limit=limit))
