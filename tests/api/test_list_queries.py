"""Query parameters of every list route: `limit=0`, parameters a route does not know, and the
`status` filter of a batch's requests. Real Redis, Flask's test client."""

from __future__ import annotations

import pytest

from app.api.batches import STATUS_SCAN_PAGE
from app.store import keys

LIST_ROUTES = ["/v1/messages/batches", "/v1/agents/", "/v1/messages/batches/{batch}/messages",
               "/v1/messages/batches/{batch}/requests", "/v1/agents/{agent}/messages"]


@pytest.fixture
def ids(client) -> dict[str, str]:
    agent = client.post("/v1/agents/", json={"model": "simulated/echo", "name": "bot"}).get_json()["id"]
    batch = client.post("/v1/messages/batches", json={"requests": [{"agent_id": agent, "input": "hi"}]}).get_json()
    return {"agent": agent, "batch": batch["id"]}


def _items(route: str, answer: object) -> list:
    return answer["messages"] if route.endswith("batch}/messages") else answer


@pytest.mark.parametrize("route", LIST_ROUTES)
def test_given_a_list_with_content_when_limit_0_is_asked_then_200_with_an_empty_list(client, ids, route):
    url = route.format(**ids)
    if "messages" not in route:  # messages appear only once a request runs (no worker here)
        assert _items(route, client.get(url, query_string={"limit": 1}).get_json())
    response = client.get(url, query_string={"limit": 0})
    assert response.status_code == 200 and _items(route, response.get_json()) == []
    negative = client.get(url, query_string={"limit": -1})
    assert negative.status_code == 422 and "limit" in negative.get_json()["detail"]


@pytest.mark.parametrize("route", LIST_ROUTES)
def test_given_a_query_parameter_the_route_does_not_know_when_listing_then_422_names_it(client, ids, route):
    response = client.get(route.format(**ids), query_string={"limit": 5, "filter_by": "x"})
    assert response.status_code == 422
    payload = response.get_json()
    assert payload["errors"] == [{"loc": ["filter_by"], "msg": payload["errors"][0]["msg"]}]
    assert payload["detail"].startswith("Invalid request: filter_by: unknown query parameter")


def test_given_letta_view_options_when_the_agent_history_is_listed_then_they_are_accepted(client, ids):
    response = client.get(f"/v1/agents/{ids['agent']}/messages", query_string={
        "use_assistant_message": "false", "assistant_message_tool_name": "send_message",
        "assistant_message_tool_kwarg": "message", "order_by": "created_at", "order": "asc"})
    assert response.status_code == 200


@pytest.fixture
def big_batch(app, client) -> tuple[str, list[str]]:
    """A batch of more requests than one scan page, every third one marked succeeded."""
    agent = client.post("/v1/agents/", json={"model": "simulated/echo"}).get_json()["id"]
    size = STATUS_SCAN_PAGE * 2 + 50
    batch = client.post("/v1/messages/batches",
                        json={"requests": [{"agent_id": agent, "input": str(i)} for i in range(size)]}).get_json()
    store = app.extensions["batchline"].store
    redis = store.client
    item_ids = redis.zrange(keys.batch_items(batch["id"]), 0, -1)
    store.blobs.materialize(batch["id"], item_ids, start=0)  # as the workers that ran them did
    succeeded = item_ids[::3]
    for item_id in succeeded:
        redis.hset(keys.item(item_id), "status", "succeeded")
    return batch["id"], succeeded


def test_given_a_status_filter_when_paging_a_batch_s_requests_then_only_that_status_comes_in_order(client, big_batch):
    batch_id, succeeded = big_batch
    seen: list[str] = []
    after = None
    while True:
        page = client.get(f"/v1/messages/batches/{batch_id}/requests",
                          query_string={"status": "succeeded", "limit": 150, **({"after": after} if after else {})})
        assert page.status_code == 200
        items = page.get_json()
        if not items:
            break
        assert {item["status"] for item in items} == {"succeeded"}
        seen += [item["id"] for item in items]
        after = items[-1]["id"]
    assert seen == succeeded

    backward = client.get(f"/v1/messages/batches/{batch_id}/requests",
                          query_string={"status": "succeeded", "limit": 4, "before": succeeded[-1]}).get_json()
    assert [item["id"] for item in backward] == succeeded[-5:-1]
    newest = client.get(f"/v1/messages/batches/{batch_id}/requests",
                        query_string={"status": "succeeded", "limit": 3, "order": "desc"}).get_json()
    assert [item["id"] for item in newest] == succeeded[::-1][:3]
    pending = client.get(f"/v1/messages/batches/{batch_id}/requests", query_string={"status": "pending"}).get_json()
    assert len(pending) == 100 and {item["status"] for item in pending} == {"pending"}


def test_given_an_unknown_status_when_filtering_requests_then_422(client, ids):
    response = client.get(f"/v1/messages/batches/{ids['batch']}/requests", query_string={"status": "done"})
    assert response.status_code == 422 and "status" in response.get_json()["detail"]
