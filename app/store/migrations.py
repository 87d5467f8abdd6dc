"""One-off changes to data written by earlier versions, run by the web process at start. Each is
idempotent and marks itself done only once it has finished, so an interrupted one runs again."""

from __future__ import annotations

import json
import logging

import redis

from app.store import keys
from app.tenancy import DEFAULT_TENANT, owner_of

logger = logging.getLogger(__name__)

#: Set once the agents and batches made before tenants existed are listed under the default tenant.
TENANT_INDEXES_DONE = keys.PREFIX + "migrated:tenant_indexes"
#: Index entries read per round trip.
PAGE = 500


def migrate_at_start(store) -> None:
    try:
        index_records_by_tenant(store.client)
    except redis.RedisError as exc:
        logger.warning("Could not check stored records for migration at start (%s); the next start will.",
                       type(exc).__name__)


def index_records_by_tenant(client: redis.Redis) -> None:
    """Agents and batches made before tenants existed belong to the default tenant: add them to
    its lists (the per-tenant indexes the list routes read)."""
    if client.exists(TENANT_INDEXES_DONE):
        return
    _index(client, keys.AGENTS, keys.tenant_agents,
           lambda pipe, agent_id: pipe.get(keys.agent(agent_id)),
           lambda raw: owner_of(json.loads(raw).get("created_by_id")) if raw else None)
    _index(client, keys.BATCHES, keys.tenant_batches,
           lambda pipe, batch_id: pipe.hget(keys.batch(batch_id), "created_by_id"),
           lambda owner: DEFAULT_TENANT if owner is None else owner_of(owner))
    client.set(TENANT_INDEXES_DONE, "1")


def _index(client, index, tenant_index, read, owner) -> None:
    members = list(client.zscan_iter(index, count=PAGE))
    for start in range(0, len(members), PAGE):
        page = members[start:start + PAGE]
        with client.pipeline(transaction=False) as pipe:
            for member, _ in page:
                read(pipe, member)
            replies = pipe.execute()
        with client.pipeline(transaction=False) as pipe:
            for (member, score), reply in zip(page, replies, strict=True):
                tenant = owner(reply)
                if tenant is not None:
                    pipe.zadd(tenant_index(tenant), {member: score})
            pipe.execute()
