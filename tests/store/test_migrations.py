"""The start-up migration: agents and batches stored before tenants existed (created by Letta's
default user id, listed only in the global indexes) join the default tenant's lists."""

from __future__ import annotations

import json

import redis

from app.ids import DEFAULT_USER_ID
from app.store import keys
from app.store.migrations import TENANT_INDEXES_DONE
from tests.support.tenants import client_of


def _make_legacy(client, redis_url: str) -> tuple[str, list[str]]:
    """An agent and two batches as an earlier version stored them: created by Letta's default
    user id (one batch without the field at all), in no tenant's list."""
    agent = client.post("/v1/agents/", json={"model": "simulated/echo"}).get_json()["id"]
    batches = [client.post("/v1/messages/batches", json={"requests": [{"agent_id": agent, "input": "q"}]}
                           ).get_json()["id"] for _ in range(2)]
    db = redis.Redis.from_url(redis_url, decode_responses=True)
    record = json.loads(db.get(keys.agent(agent)))
    db.set(keys.agent(agent), json.dumps({**record, "created_by_id": DEFAULT_USER_ID}))
    db.hset(keys.batch(batches[0]), "created_by_id", DEFAULT_USER_ID)
    db.hdel(keys.batch(batches[1]), "created_by_id")
    db.delete(keys.tenant_agents("default"), keys.tenant_batches("default"), TENANT_INDEXES_DONE)
    return agent, batches


def test_given_records_from_before_tenants_when_the_service_starts_then_the_default_tenant_lists_them_and_others_do_not(
        client, make_app, redis_url):
    agent, batches = _make_legacy(client, redis_url)
    assert client.get("/v1/agents/").get_json() == [] and client.get("/v1/messages/batches").get_json() == []

    started = make_app()
    default = started.test_client()
    assert [found["id"] for found in default.get("/v1/agents/").get_json()] == [agent]
    assert [found["id"] for found in default.get("/v1/messages/batches?order=asc").get_json()] == batches
    assert default.get(f"/v1/agents/{agent}").status_code == 200
    assert all(default.get(f"/v1/messages/batches/{batch}").status_code == 200 for batch in batches)

    other = client_of(started, redis_url, tenant="b")
    assert other.get("/v1/agents/").get_json() == [] and other.get("/v1/messages/batches").get_json() == []
    assert other.get(f"/v1/agents/{agent}").status_code == 404
    assert other.get(f"/v1/messages/batches/{batches[0]}").status_code == 404


def test_given_the_migration_done_when_the_service_starts_again_then_it_is_not_run_twice(client, make_app, redis_url):
    agent, _ = _make_legacy(client, redis_url)
    make_app()
    db = redis.Redis.from_url(redis_url, decode_responses=True)
    assert db.exists(TENANT_INDEXES_DONE)
    db.zrem(keys.tenant_agents("default"), agent)  # were it run again, it would list the agent again
    make_app()
    assert client.get("/v1/agents/").get_json() == []
