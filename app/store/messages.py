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
        """The messages that exist, in order."""
        return [message for message in self.get_aligned(message_ids) if message is not None]

    def get_aligned(self, message_ids: list[str]) -> list[dict[str, Any] | None]:
        """One entry per id, None where the message is missing."""
        if not message_ids:
            return []
        raws = self.client.mget([keys.message(message_id) for message_id in message_ids])
        return [None if raw is None else json.loads(raw) for raw in raws]

    def newer_than(self, agent_id: str, *, after_seq: int, limit: int) -> list[tuple[str, int, int]]:
        """The agent's latest `limit` messages committed after sequence `after_seq`, oldest first,
        as (id, sequence, stored size in bytes): sizes come without loading the messages."""
        if limit <= 0:
            return []
        found = self.client.zrevrangebyscore(keys.agent_messages(agent_id), "+inf", f"({after_seq}", start=0,
                                             num=limit, withscores=True)
        if not found:
            return []
        found.reverse()
        with self.client.pipeline(transaction=False) as pipe:
            for message_id, _ in found:
                pipe.strlen(keys.message(message_id))
            sizes = pipe.execute()
        return [(message_id, int(seq), size) for (message_id, seq), size in zip(found, sizes, strict=True)]

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
