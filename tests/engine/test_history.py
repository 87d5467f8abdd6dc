"""The history a run sends: cut to a byte budget, loaded once per process for the runs of one
agent, and never loading a message too large to send (on a real Redis)."""

from __future__ import annotations

import json

from app.engine.history import HistoryCache
from app.engine.messages import new_message
from app.schemas.agents import CreateAgent
from app.store import Store
from app.store.runs import RunRecord


def _commit(store: Store, agent_id: str, *texts: str) -> list[str]:
    messages = [new_message("user", [{"type": "text", "text": text}], agent_id=agent_id, batch_item_id=None)
                for text in texts]
    store.runs.commit(agent_id=agent_id, record=RunRecord(outcome="succeeded", stop_reason="end_turn",
                                                          messages=messages))
    return [message["id"] for message in messages]


def _spy_loads(store, monkeypatch, seen) -> None:
    """Report the ids of the messages each history refresh read from Redis (value included)."""
    real = store.messages.newer_loaded

    def spy(*args, **kwargs):
        newer = real(*args, **kwargs)
        seen([message_id for message_id, _seq, _size, message in newer if message is not None])
        return newer

    monkeypatch.setattr(store.messages, "newer_loaded", spy)


def _texts(history: list[dict]) -> list[str]:
    return [part["text"] for message in history for part in message["content"]]


def test_given_a_budget_when_history_is_read_then_only_the_newest_messages_that_fit_are_sent(store):
    agent_id = store.agents.create(CreateAgent(model="simulated/echo"))["id"]
    _commit(store, agent_id, *(f"message {i} " + "x" * 1000 for i in range(10)))
    cache = HistoryCache(store=store, max_messages=200, max_bytes=1_000_000)
    one = len(json.dumps(store.messages.page_for_agent(agent_id, after=None, before=None, limit=1,
                                                       order="desc")[0]))
    history = cache.recent(agent_id, budget_bytes=3 * one + one // 2)
    assert [text[:9] for text in _texts(history)] == ["message 7", "message 8", "message 9"]


def test_given_a_message_over_the_cap_when_history_is_read_then_it_is_never_loaded_and_a_notice_stands_in(
        store, monkeypatch):
    agent_id = store.agents.create(CreateAgent(model="simulated/echo"))["id"]
    [huge] = _commit(store, agent_id, "y" * 500_000)
    _commit(store, agent_id, "after the big one")
    loaded: list[str] = []
    _spy_loads(store, monkeypatch, lambda ids: loaded.extend(ids))
    cache = HistoryCache(store=store, max_messages=200, max_bytes=100_000)
    history = cache.recent(agent_id, budget_bytes=10_000_000)
    assert huge not in loaded
    assert history[0]["role"] == "system" and "too large" in _texts(history)[0]
    assert _texts(history)[1] == "after the big one"


def test_given_two_runs_of_one_agent_when_history_is_read_then_it_is_loaded_once_and_shared(store, monkeypatch):
    agent_id = store.agents.create(CreateAgent(model="simulated/echo"))["id"]
    _commit(store, agent_id, "first", "second")
    cache = HistoryCache(store=store, max_messages=200, max_bytes=1_000_000)
    first = cache.recent(agent_id, budget_bytes=1_000_000)
    loads: list[list[str]] = []
    _spy_loads(store, monkeypatch, lambda ids: ids and loads.append(ids))
    second = cache.recent(agent_id, budget_bytes=1_000_000)
    assert loads == []  # nothing new: not one message loaded again
    assert all(a is b for a, b in zip(first, second, strict=True))
    [third_id] = _commit(store, agent_id, "third")
    third = cache.recent(agent_id, budget_bytes=1_000_000)
    assert loads == [[third_id]]  # only what was committed since
    assert _texts(third) == ["first", "second", "third"]
    assert cache.held_bytes(agent_id) > 0


def test_given_more_messages_than_the_count_cap_when_read_then_the_newest_are_kept(store):
    agent_id = store.agents.create(CreateAgent(model="simulated/echo"))["id"]
    cache = HistoryCache(store=store, max_messages=3, max_bytes=1_000_000)
    _commit(store, agent_id, "a", "b")
    assert _texts(cache.recent(agent_id, budget_bytes=1_000_000)) == ["a", "b"]
    _commit(store, agent_id, "c", "d", "e")
    assert _texts(cache.recent(agent_id, budget_bytes=1_000_000)) == ["c", "d", "e"]
