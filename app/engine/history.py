"""The agent history a run sends to its model: cut to a byte budget drawn from the agent's context
window, and loaded once per process for all the concurrent runs of one agent.

Committed messages never change, so a process keeps each agent's recent history and, for the
next run of that agent, only asks Redis whether anything newer was committed. A message too large
for any budget is never loaded: the model reads a one-line notice in its place. Memory is bounded
by `max_bytes` per agent and `cache_max_bytes` per process, whatever the agents' histories hold.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

from app.engine.prompt import TurnCache
from app.ids import iso_from_ns
from app.store import Store
from app.store.messages import NewerMessage

#: Bytes of stored message JSON counted per token of context window: about 4 characters a token,
#: so a budget in bytes errs on the side of sending less.
BYTES_PER_TOKEN = 4
#: Loaded histories a process keeps across runs, in bytes of message JSON.
DEFAULT_CACHE_MAX_BYTES = 64 * 1024 * 1024


@dataclass
class _Entry:
    #: (sequence, size in bytes, message), oldest first; the message is None when it was too
    #: large to load.
    messages: list[tuple[int, int, dict[str, Any] | None]] = field(default_factory=list)
    loaded_bytes: int = 0

    @property
    def last_seq(self) -> int:
        return self.messages[-1][0] if self.messages else -1


class HistoryCache:
    """Recent history per agent, kept per process (use one instance from one thread)."""

    def __init__(self, *, store: Store, max_messages: int, max_bytes: int,
                 cache_max_bytes: int = DEFAULT_CACHE_MAX_BYTES) -> None:
        self.store = store
        self.max_messages = max_messages
        self.max_bytes = max_bytes
        self.cache_max_bytes = cache_max_bytes
        self._entries: OrderedDict[str, _Entry] = OrderedDict()
        self._cached_bytes = 0
        #: The same messages as chat turns, for the prompt: converted once, not once per run.
        self.turns = TurnCache()

    def recent(self, agent_id: str, *, budget_bytes: int, refresh: bool = True) -> list[dict[str, Any]]:
        """The agent's latest messages, oldest first, whose stored size fits `budget_bytes` (and
        the process-wide `max_bytes`); a notice stands in for each message too large to send.
        `refresh=False` when the caller has just `absorb`ed what Redis holds newer."""
        entry = self._entries.get(agent_id) if not refresh else None
        if entry is None:
            entry = self._refreshed(agent_id)
        budget = min(budget_bytes, self.max_bytes)
        chosen: list[dict[str, Any]] = []
        used = 0
        for _seq, size, message in reversed(entry.messages):
            if message is None or size > budget:
                chosen.append(_omitted_notice(size))
                continue
            if used + size > budget:
                break
            used += size
            chosen.append(message)
        chosen.reverse()
        return chosen

    def held_bytes(self, agent_id: str) -> int:
        """Bytes of the agent's history this process holds (0 before its first run here)."""
        entry = self._entries.get(agent_id)
        return entry.loaded_bytes if entry else 0

    def after_seq(self, agent_id: str) -> int:
        """The sequence of the agent's latest message held here (-1: none): ask Redis for later ones."""
        entry = self._entries.get(agent_id)
        return entry.last_seq if entry else -1

    def absorb(self, agent_id: str, newer: list[NewerMessage]) -> None:
        """Take in what Redis answered for `after_seq` (MessageStore.newer_loaded): the caller
        fetched it in a round trip of its own, e.g. with its claim."""
        self._merge(agent_id, newer)

    # -- loading ---------------------------------------------------------------------------

    def _refreshed(self, agent_id: str) -> _Entry:
        newer = self.store.messages.newer_loaded(agent_id, after_seq=self.after_seq(agent_id),
                                                 limit=self.max_messages, max_bytes=self.max_bytes)
        return self._merge(agent_id, newer)

    def _merge(self, agent_id: str, newer: list[NewerMessage]) -> _Entry:
        entry = self._entries.pop(agent_id, None) or _Entry()
        self._cached_bytes -= entry.loaded_bytes
        # Only what is later than what is held: an answer may overlap what another run took in.
        fresh = [(seq, size, message) for _id, seq, size, message in newer if seq > entry.last_seq]
        if fresh:
            entry.messages = (entry.messages + fresh)[-self.max_messages:]
            entry.loaded_bytes = sum(size for _, size, message in entry.messages if message is not None)
        if entry.loaded_bytes <= self.cache_max_bytes:
            self._entries[agent_id] = entry
            self._cached_bytes += entry.loaded_bytes
            while self._cached_bytes > self.cache_max_bytes and len(self._entries) > 1:
                _, evicted = self._entries.popitem(last=False)
                self._cached_bytes -= evicted.loaded_bytes
        return entry


def _omitted_notice(size: int) -> dict[str, Any]:
    text = (f"[An earlier message of {size} bytes was left out here: it is too large for this model's "
            "context window.]")
    return {"id": "message-omitted", "role": "system", "content": [{"type": "text", "text": text}],
            "created_at": iso_from_ns(0)}


def context_budget_bytes(llm_config: dict[str, Any]) -> int:
    """What the whole prompt may hold, in bytes, for the agent's context window (minus the room
    its answer may take)."""
    window = int(llm_config.get("context_window") or 0)
    answer = int(llm_config.get("max_tokens") or 0)
    return max(0, window - answer) * BYTES_PER_TOKEN
