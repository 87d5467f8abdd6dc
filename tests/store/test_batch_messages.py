"""A batch's messages of one agent, found through the agent's history and the batch's index on a
real Redis, after real runs of the worker runtime."""

from __future__ import annotations

import json

import pytest

from app.schemas.agents import CreateAgent
from app.schemas.batches import LettaBatchRequest
from app.store import Store, keys
from app.store.pagination import UnknownCursor
from tests.support.runtime import run_chunk, worker_runtime


@pytest.fixture
def two_agent_batch(store: Store, redis_url: str, tmp_path) -> tuple[str, str, str]:
    """A batch of 6 requests alternating between agents A and B, run to its end; A's history also
    holds a message of its own written in the middle of the batch's span."""
    a, b = (store.agents.create(CreateAgent(model="simulated/echo"))["id"] for _ in range(2))
    requests = [LettaBatchRequest(agent_id=(a, b)[i % 2], input=f"q{i}") for i in range(6)]
    batch_id, _ = store.batches.create(requests=requests, metadata=None, completion_window_s=3600, callback_url=None)
    run_chunk(worker_runtime(redis_url, tmp_path, simulated_ttft_ms=0, simulated_token_ms=0), batch_id, 0, 5)
    index = store.client.zrange(keys.batch_messages(batch_id), 0, -1, withscores=True)
    middle = (index[0][1] + index[-1][1]) / 2
    store.client.set(keys.message("message-elsewhere"), json.dumps({"id": "message-elsewhere", "agent_id": a}))
    store.client.zadd(keys.agent_messages(a), {"message-elsewhere": middle})
    return batch_id, a, b


def _batch_ids_of(store: Store, batch_id: str, agent_id: str) -> list[str]:
    ids = store.client.zrange(keys.batch_messages(batch_id), 0, -1)
    return [message["id"] for message in store.messages.get_many(ids) if message["agent_id"] == agent_id]


def _list(store: Store, batch_id: str, agent_id: str, **query) -> list[str]:
    query = {"after": None, "before": None, "limit": 100, "order": "asc", **query}
    return [m["id"] for m in store.messages.page_for_batch(batch_id, agent_id=agent_id, **query)]


@pytest.mark.parametrize("order", ["asc", "desc"])
def test_given_a_batch_of_two_agents_when_listing_one_agent_s_messages_then_exactly_its_batch_messages_come_in_order(
        store, two_agent_batch, order):
    batch_id, a, b = two_agent_batch
    for agent in (a, b):
        expected = _batch_ids_of(store, batch_id, agent)
        assert len(expected) == 6  # 3 runs of a user message and an answer
        assert _list(store, batch_id, agent, order=order) == (expected if order == "asc" else expected[::-1])


@pytest.mark.parametrize("order", ["asc", "desc"])
def test_given_any_page_size_when_paging_one_agent_s_batch_messages_with_cursors_then_each_comes_once(
        store, two_agent_batch, order):
    batch_id, a, _ = two_agent_batch
    expected = _batch_ids_of(store, batch_id, a)
    expected = expected if order == "asc" else expected[::-1]
    for size in (1, 2, 4, 7):
        seen, after = [], None
        while page := _list(store, batch_id, a, after=after, limit=size, order=order):
            seen += page
            after = page[-1]
        assert seen == expected
    seen, before = [], expected[-1]
    while page := _list(store, batch_id, a, before=before, limit=2, order=order):
        seen = page + seen
        before = page[0]
    assert seen == expected[:-1]


def test_given_a_cursor_of_another_agent_or_outside_the_batch_when_listing_then_it_is_an_unknown_cursor(
        store, two_agent_batch):
    batch_id, a, b = two_agent_batch
    for cursor in (_batch_ids_of(store, batch_id, b)[0], "message-elsewhere"):
        with pytest.raises(UnknownCursor):
            _list(store, batch_id, a, after=cursor)


def test_given_the_agent_was_deleted_when_listing_its_batch_messages_then_they_still_come(store, two_agent_batch):
    batch_id, a, _ = two_agent_batch
    expected = _batch_ids_of(store, batch_id, a)
    assert store.agents.delete(a)
    assert not store.client.exists(keys.agent_messages(a))
    assert _list(store, batch_id, a) == expected
    assert _list(store, batch_id, a, after=expected[1], limit=2) == expected[2:4]


def test_given_an_agent_with_no_request_in_the_batch_when_listing_then_the_list_is_empty(store, two_agent_batch):
    batch_id, _, _ = two_agent_batch
    other = store.agents.create(CreateAgent(model="simulated/echo"))["id"]
    assert _list(store, batch_id, other) == []
