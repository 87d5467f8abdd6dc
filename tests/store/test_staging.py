"""A create's requests staged while its body is read (app/store/staging.py), on a real Redis:
nothing is left of a refused or lost create, and a committed one lists its items in order."""

from __future__ import annotations

import time

import pytest
import redis

from app.schemas.agents import CreateAgent
from app.schemas.batches import LettaBatchRequest
from app.store import Store, connect, keys
from app.store.batches import StagedRequestsLost
from tests.support.slow_link import SlowLink


def test_given_staged_requests_when_one_key_expired_before_the_create_then_it_is_refused_and_nothing_is_left(store):
    agent = store.agents.create(CreateAgent(model="simulated/echo"))
    staged = store.batches.stage(blob_size=3)
    staged.add([LettaBatchRequest(agent_id=agent["id"], input=f"q{i}") for i in range(7)])
    staged.finish()
    assert all(store.client.ttl(key) > 0 for key in staged.staged_keys())
    store.client.delete(keys.batch_requests(staged.batch_id, 1))

    with pytest.raises(StagedRequestsLost):
        store.batches.create(staged=staged, callback_url=None, metadata=None, completion_window_s=60)

    assert store.client.zcard(keys.BATCHES) == 0 and not store.client.exists(*staged.staged_keys())


def test_given_staged_requests_when_the_create_commits_them_then_they_are_permanent_and_list_in_order(store):
    agents = [store.agents.create(CreateAgent(model="simulated/echo"))["id"] for _ in range(2)]
    staged = store.batches.stage(blob_size=3)
    for start in range(0, 8, 5):  # groups that do not line up with the blobs
        staged.add([LettaBatchRequest(agent_id=agents[i // 6], input=f"q{i}") for i in range(start, min(start + 5, 8))])
    staged.finish()

    batch_id, created = store.batches.create(staged=staged, callback_url=None, metadata=None, completion_window_s=60)

    assert created and batch_id == staged.batch_id and staged.first_index == {agents[0]: 0, agents[1]: 6}
    assert {store.client.ttl(key) for key in staged.staged_keys()} == {-1}
    page = store.batches.items_page(batch_id, after=None, before=None, limit=10, order="asc")
    assert [(item["index"], item["agent_id"]) for item in page] == [(i, agents[i // 6]) for i in range(8)]


def test_given_a_body_slower_than_the_health_check_interval_when_staged_then_every_write_lands(redis_url):
    client = redis.Redis.from_url(redis_url, decode_responses=True, health_check_interval=0.2)
    slow = Store(client=client)
    agent = slow.agents.create(CreateAgent(model="simulated/echo"))
    staged = slow.batches.stage(blob_size=2)
    staged.add([LettaBatchRequest(agent_id=agent["id"], input="first")] * 2)
    staged.flush()  # the writes so far go out before the pause, their replies unread
    time.sleep(0.3)  # past the interval: a health check now would read a write's reply as its PONG
    staged.add([LettaBatchRequest(agent_id=agent["id"], input="second")] * 2)
    staged.finish()

    batch_id, _ = slow.batches.create(staged=staged, callback_url=None, metadata=None, completion_window_s=60)
    assert slow.batches.get(batch_id)["request_counts"]["total"] == 4


def test_given_staged_writes_still_on_their_way_to_redis_when_the_create_is_refused_then_none_is_left_once_they_land(
        redis_url):
    """Over a slow link, the last blob is still arriving when the refusal deletes what was staged
    (on another connection, which the small delete overtakes): it must not land afterwards, nor
    list its items again in an index without a time to live."""
    direct = redis.Redis.from_url(redis_url, decode_responses=True)
    with SlowLink(target_port=direct.connection_pool.connection_kwargs["port"], bytes_per_s=2 * 1024 * 1024) as link:
        slow = Store(client=connect(link.url()))
        agent = slow.agents.create(CreateAgent(model="simulated/echo"))["id"]
        staged = slow.batches.stage(blob_size=2)
        staged.add([LettaBatchRequest(agent_id=agent, input="first")] * 2)
        staged.flush()
        staged.add([LettaBatchRequest(agent_id=agent, input="x" * 200_000)] * 2)  # a flush of 400 KB

        staged.discard_unless_committed()
        slow.client.connection_pool.disconnect()
        link.wait_for_closed(still_open=0)  # Redis has run every command sent

    assert {key: direct.ttl(key) for key in direct.scan_iter(match=f"{keys.PREFIX}batch:*")} == {}
