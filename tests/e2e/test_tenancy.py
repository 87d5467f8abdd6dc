"""Tenants on the real service (gunicorn and a dramatiq worker, the SDK with strict validation):
tenant B, holding its own key, cannot see, use, delete or cancel anything of tenant A. The routes
are read from the served OpenAPI document, so a route added later is covered without editing this."""

from __future__ import annotations

import re

import httpx
import pytest
import redis
from letta_client import NotFoundError

from app.store import keys
from tests.e2e.conftest import wait_for_status
from tests.e2e.test_sdk_end_to_end import _openai_agent
from tests.fakes.model_servers import FakeOpenAIServer, Reply
from tests.support.tenants import create_key

#: Text only tenant A's data holds: it must never reach tenant B.
A_PROMPT = "tenant-a-private-prompt"
A_ANSWER = "tenant-a-private-answer"
#: The held batch waits this long for its first token: it is still running while B tries to cancel it.
HOLD_S = 60.0
#: A request body every id route that takes one accepts, so that its answer is about the id.
VALID_BODY = {"input": "from tenant b"}
ID_PARAMETER = re.compile(r"\{(agent_id|batch_id)\}")


def _id_routes(base_url: str) -> list[tuple[str, str]]:
    """(method, path template) of every operation whose path names an agent or a batch."""
    paths = httpx.get(f"{base_url}/docs/openapi.json").json()["paths"]
    return sorted((method.upper(), path) for path, operations in paths.items() if ID_PARAMETER.search(path)
                  for method in operations if method in ("get", "post", "put", "patch", "delete"))


def _call(service, key: str, method: str, template: str, ids: dict[str, str]) -> httpx.Response:
    url = service.base_url + ID_PARAMETER.sub(lambda match: ids[match.group(1)], template)
    body = VALID_BODY if method in ("POST", "PUT", "PATCH") and not template.endswith("/cancel") else None
    return httpx.request(method, url, json=body, headers={"Authorization": f"Bearer {key}"}, timeout=30)


def _counts(redis_url: str) -> tuple[int, int]:
    client = redis.Redis.from_url(redis_url)
    return client.zcard(keys.BATCHES), client.zcard(keys.AGENTS)


def test_given_two_tenants_when_b_uses_a_s_ids_on_every_route_then_each_answers_404_like_an_unknown_id_and_a_is_untouched(  # noqa: E501
        start_service, redis_url):
    with FakeOpenAIServer(reply=Reply(text=A_ANSWER)) as model, \
            FakeOpenAIServer(first_token_delay_s=HOLD_S) as held:
        service = start_service()
        a = service.client()
        b_key = create_key(redis_url, tenant="b")
        b = service.client(api_key=b_key)

        a_agent = _openai_agent(a, model)
        a_done = a.batches.create(requests=[{"agent_id": a_agent.id, "input": f"{A_PROMPT} {i}"} for i in range(3)])
        assert wait_for_status(a, a_done.id, timeout_s=30).status == "completed"
        a_running = a.batches.create(requests=[{"agent_id": _openai_agent(a, held).id, "input": A_PROMPT}])
        assert held.wait_for_open_streams(1, timeout_s=20)
        b_agent = _openai_agent(b, model)
        b_done = b.batches.create(requests=[{"agent_id": b_agent.id, "input": "b's own"}])
        assert wait_for_status(b, b_done.id, timeout_s=30).status == "completed"

        # The tenant comes from the key: A's objects carry "default", B's carry "b", messages included.
        assert (a_agent.created_by_id, a_agent.last_updated_by_id) == ("default", "default")
        assert (b_agent.created_by_id, b_agent.last_updated_by_id) == ("b", "b")
        assert (a_done.created_by_id, a_done.last_updated_by_id) == ("default", "default")
        assert (b_done.created_by_id, b_done.last_updated_by_id) == ("b", "b")
        for key, batch_id, tenant in ((service.api_key, a_done.id, "default"), (b_key, b_done.id, "b")):
            messages = httpx.get(f"{service.base_url}/v1/messages/batches/{batch_id}/messages",
                                 headers={"Authorization": f"Bearer {key}"}).json()["messages"]
            assert messages and {message["created_by_id"] for message in messages} == {tenant}, batch_id

        routes = _id_routes(service.base_url)
        assert len(routes) >= 9, routes  # the enumeration found the id routes (agents and batches)
        for batch in (a_done, a_running):
            a_ids = {"agent_id": a_agent.id, "batch_id": batch.id}
            unknown = {"agent_id": "agent-00000000-0000-4000-8000-000000000000",
                       "batch_id": "job-00000000-0000-4000-8000-000000000000"}
            for method, template in routes:
                answer = _call(service, b_key, method, template, a_ids)
                assert answer.status_code == 404, (method, template, answer.text)
                text = answer.text
                assert A_PROMPT not in text and A_ANSWER not in text and a_agent.name not in text
                # Indistinguishable from an id that exists nowhere: B learns nothing.
                reference = _call(service, b_key, method, template, unknown)
                for name, value in a_ids.items():
                    text = text.replace(value, unknown[name])
                assert (reference.status_code, reference.text) == (404, text), (method, template)

        # Lists: B sees its own objects only, and A's ids are no cursor in them.
        assert [agent.id for agent in b.agents.list()] == [b_agent.id]
        assert [batch.id for batch in b.batches.list()] == [b_done.id]
        for path, a_id in (("/v1/agents/", a_agent.id), ("/v1/messages/batches", a_done.id)):
            cursor = httpx.get(f"{service.base_url}{path}", params={"after": a_id},
                               headers={"Authorization": f"Bearer {b_key}"})
            assert cursor.status_code == 400 and A_PROMPT not in cursor.text, path

        # A batch from B that names A's agent (alone or beside B's own) is refused and creates nothing.
        before = _counts(redis_url)
        for requests in ([{"agent_id": a_agent.id, "input": "x"}],
                         [{"agent_id": b_agent.id, "input": "x"}, {"agent_id": a_agent.id, "input": "x"}]):
            with pytest.raises(NotFoundError):
                b.batches.create(requests=requests)
        assert _counts(redis_url) == before
        assert [batch.id for batch in b.batches.list()] == [b_done.id]

        # B's delete and cancel touch nothing of A.
        with pytest.raises(NotFoundError):
            b.agents.delete(a_agent.id)
        assert a.agents.retrieve(a_agent.id).id == a_agent.id
        with pytest.raises(NotFoundError):
            b.batches.cancel(a_running.id)
        assert a.batches.retrieve(a_running.id).status == "running" and held.open_streams == 1
        assert a_agent.id in {agent.id for agent in a.agents.list()}
        a.batches.cancel(a_running.id)
        assert wait_for_status(a, a_running.id, timeout_s=30).status == "cancelled"
