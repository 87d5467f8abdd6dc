"""Messages: one JSON value each, indexed per agent (its history) and per batch, both scored by the
global sequence so every index lists them in creation order. A batch's messages of one agent are
found through those two, not a third index: it cost each item about 300 bytes of Redis."""

from __future__ import annotations

import json
from typing import Any

import redis

from app.store import keys
from app.store.pagination import Order, UnknownCursor, filtered_page, page
from app.store.scripts import Scripts

#: A message newer than what a process holds, as (id, sequence, stored size in bytes, the message
#: or None when it is too large to load or gone).
NewerMessage = tuple[str, int, int, dict[str, Any] | None]


class MessageStore:
    def __init__(self, *, client: redis.Redis, scripts: Scripts | None = None) -> None:
        self.client = client
        self.scripts = scripts or Scripts(client=client)

    def get_many(self, message_ids: list[str]) -> list[dict[str, Any]]:
        """The messages that exist, in order."""
        return [message for message in self.get_aligned(message_ids) if message is not None]

    def get_aligned(self, message_ids: list[str]) -> list[dict[str, Any] | None]:
        """One entry per id, None where the message is missing."""
        if not message_ids:
            return []
        raws = self.client.mget([keys.message(message_id) for message_id in message_ids])
        return [None if raw is None else json.loads(raw) for raw in raws]

    def newer_loaded(self, agent_id: str, *, after_seq: int, limit: int, max_bytes: int) -> list[NewerMessage]:
        """The agent's latest `limit` messages committed after sequence `after_seq`, oldest first,
        each loaded when its stored size is at most `max_bytes`: one round trip."""
        if limit <= 0:
            return []
        return parse_newer(self.scripts.newer_messages(keys=[keys.agent_messages(agent_id)],
                                                       args=newer_args(after_seq, limit, max_bytes)))

    def page_for_batch(self, batch_id: str, *, agent_id: str | None, after: str | None, before: str | None,
                       limit: int, order: Order) -> list[dict[str, Any]]:
        if not agent_id:
            return self.get_many(page(self.client, keys.batch_messages(batch_id), after=after, before=before,
                                      limit=limit, order=order))
        return self.get_many(self._batch_agent_ids(batch_id, agent_id, after=after, before=before, limit=limit,
                                                   order=order))

    def _batch_agent_ids(self, batch_id: str, agent_id: str, *, after: str | None, before: str | None, limit: int,
                         order: Order) -> list[str]:
        """Walks the agent's history within the batch's span, keeping what the batch index holds;
        once the agent is deleted (its history with it), walks the batch index, keeping the
        messages that name the agent."""
        batch_index, agent_index = keys.batch_messages(batch_id), keys.agent_messages(agent_id)
        with self.client.pipeline(transaction=False) as pipe:
            pipe.zrange(batch_index, 0, 0, withscores=True)
            pipe.zrange(batch_index, -1, -1, withscores=True)
            pipe.exists(agent_index)
            first, last, history_kept = pipe.execute()
        if not first:
            if after or before:
                raise UnknownCursor("after" if after else "before", after or before)
            return []
        scores = {name: self._cursor_score(batch_index, agent_id, name, value)
                  for name, value in (("after", after), ("before", before)) if value}
        if history_kept:
            key, within = agent_index, (int(first[0][1]), int(last[0][1]))

            def keep(ids: list[str]) -> list[bool]:
                return [score is not None for score in self.client.zmscore(batch_index, ids)]
        else:
            key, within = batch_index, None

            def keep(ids: list[str]) -> list[bool]:
                return [message is not None and message.get("agent_id") == agent_id
                        for message in self.get_aligned(ids)]
        return filtered_page(self.client, key, keep=keep, after_score=scores.get("after"),
                             before_score=scores.get("before"), within=within, limit=limit, order=order)

    def _cursor_score(self, batch_index: str, agent_id: str, name: str, message_id: str) -> int:
        score = self.client.zscore(batch_index, message_id)
        found = self.get_aligned([message_id])[0] if score is not None else None
        if found is None or found.get("agent_id") != agent_id:
            raise UnknownCursor(name, message_id)
        return int(score)

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


def newer_args(after_seq: int, limit: int, max_bytes: int) -> list[str | int]:
    """ARGV of app/lua/newer_messages.lua."""
    return [after_seq, limit, max_bytes, keys.MESSAGE_PREFIX]


def parse_newer(reply: list[Any]) -> list[NewerMessage]:
    """The reply of app/lua/newer_messages.lua."""
    return [(reply[i], int(float(reply[i + 1])), int(reply[i + 2]), None if reply[i + 3] is None
             else json.loads(reply[i + 3])) for i in range(0, len(reply), 4)]
