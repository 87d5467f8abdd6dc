"""A batch's messages listed per agent on a real Redis: a batch of one agent keeps one index (its
batch index), a batch of several one per agent as well."""

from __future__ import annotations

from app.engine.messages import new_message
from app.schemas.agents import CreateAgent
from app.schemas.batches import LettaBatchRequest
from app.store import Store, keys
from app.store.commits import ItemCommit
from app.store.runs import RunRecord


def _run(store: Store, batch_agents: list[str]) -> tuple[str, list[str]]:
    requests = [LettaBatchRequest(agent_id=agent_id, input="q") for agent_id in batch_agents]
    batch_id, _ = store.batches.create(requests=requests, callback_url=None, metadata=None, completion_window_s=60)
    item_ids = store.batches.item_ids(batch_id, start=0, stop=-1)
    entries = []
    for agent_id, item_id in zip(batch_agents, item_ids, strict=True):
        assert store.runs.claim(batch_id=batch_id, item_id=item_id, owner="w1", lease_s=30).action == "run"
        message = new_message("user", [{"type": "text", "text": item_id}], agent_id=agent_id, batch_item_id=item_id)
        entries.append(ItemCommit(batch_id=batch_id, item_id=item_id, agent_id=agent_id,
                                  record=RunRecord(outcome="succeeded", stop_reason="end_turn", messages=[message])))
    assert all(commit.committed for commit in store.commits.commit_many(entries, owner="w1"))
    return batch_id, item_ids


def _listed(store: Store, batch_id: str, agent_id: str | None) -> list[str]:
    return [message["batch_item_id"] for message in store.messages.page_for_batch(
        batch_id, agent_id=agent_id, after=None, before=None, limit=50, order="asc")]


def test_given_a_batch_of_one_agent_when_its_messages_are_listed_per_agent_then_no_second_index_is_kept(store):
    agent_id, other = (store.agents.create(CreateAgent(model="simulated/echo"))["id"] for _ in range(2))
    batch_id, item_ids = _run(store, [agent_id, agent_id])
    assert store.client.exists(keys.batch_agent_messages(batch_id, agent_id)) == 0
    assert _listed(store, batch_id, agent_id) == item_ids == _listed(store, batch_id, None)
    assert _listed(store, batch_id, other) == []


def test_given_a_batch_of_two_agents_when_its_messages_are_listed_per_agent_then_each_gets_its_own(store):
    first, second = (store.agents.create(CreateAgent(model="simulated/echo"))["id"] for _ in range(2))
    batch_id, item_ids = _run(store, [first, second, first])
    assert _listed(store, batch_id, first) == [item_ids[0], item_ids[2]]
    assert _listed(store, batch_id, second) == [item_ids[1]]
    assert _listed(store, batch_id, None) == item_ids
