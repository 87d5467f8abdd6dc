"""The batches routes over a real Redis, through Flask's test client (no workers)."""

from __future__ import annotations

import pytest

from app.store import keys
from tests.support.ssrf import NON_PUBLIC_ADDRESSES, OTHER_SPELLINGS


@pytest.fixture
def agent_id(client) -> str:
    return client.post("/v1/agents/", json={"model": "simulated/echo"}).get_json()["id"]


def _batch_count(app) -> int:
    return app.extensions["batchline"].store.client.zcard(keys.BATCHES)


def test_given_a_valid_batch_when_posted_then_it_reads_running_with_every_batchjob_field(client, agent_id):
    response = client.post("/v1/messages/batches", json={
        "requests": [{"agent_id": agent_id, "input": "hi"}, {"agent_id": agent_id, "messages": [
            {"role": "user", "content": [{"type": "text", "text": "hello"}]}]}],
        "metadata": {"team": "ops"}})
    assert response.status_code == 200
    batch = response.get_json()
    assert batch["id"].startswith("job-") and batch["status"] == "running"
    assert batch["agent_id"] == agent_id and batch["job_type"] == "batch" and batch["background"] is None
    assert batch["metadata"] == {"job_type": "batch_messages", "team": "ops"}
    assert batch["callback_url"] is None and batch["completed_at"] is None and batch["stop_reason"] is None
    assert batch["created_at"].endswith("Z") and batch["updated_at"].endswith("Z")
    assert batch["request_counts"] == {"total": 2, "pending": 2, "running": 0, "succeeded": 0, "errored": 0,
                                       "cancelled": 0, "expired": 0}
    expected = {"id", "agent_id", "background", "callback_error", "callback_sent_at", "callback_status_code",
                "callback_url", "completed_at", "created_at", "created_by_id", "job_type", "last_updated_by_id",
                "metadata", "status", "stop_reason", "total_duration_ns", "ttft_ns", "updated_at", "request_counts"}
    assert set(batch) == expected


def test_given_requests_for_two_agents_when_posted_then_agent_id_is_null(client, agent_id):
    other = client.post("/v1/agents", json={"model": "simulated/echo"}).get_json()["id"]
    batch = client.post("/v1/messages/batches", json={
        "requests": [{"agent_id": agent_id, "input": "a"}, {"agent_id": other, "input": "b"}]}).get_json()
    assert batch["agent_id"] is None


def test_given_an_unknown_agent_when_a_batch_is_posted_then_404_names_it_and_no_batch_is_created(app, client, agent_id):
    response = client.post("/v1/messages/batches", json={
        "requests": [{"agent_id": agent_id, "input": "a"}, {"agent_id": "agent-missing", "input": "b"}]})
    assert response.status_code == 404
    assert "agent-missing" in response.get_json()["detail"]
    assert "requests[1]" in response.get_json()["detail"]
    assert _batch_count(app) == 0


@pytest.mark.parametrize(("body", "path"), [
    ({"requests": [{"input": "x"}]}, ["requests", 0, "agent_id"]),
    ({"requests": []}, ["requests"]),
    ({"requests": [{"agent_id": "agent-1", "input": "x", "messages": [{"role": "user", "content": "y"}]}]},
     ["requests", 0]),
    ({"requests": [{"agent_id": "agent-1", "messages": [{"role": "robot", "content": "y"}]}]},
     ["requests", 0, "messages", 0, "role"]),
    ({"requests": [{"agent_id": "agent-1", "input": "x", "max_steps": 1001}]}, ["requests", 0, "max_steps"]),
    ({"requests": [{"agent_id": "agent-1", "input": "x"}], "callback_url": "ftp://example.com"}, ["callback_url"]),
    ({"requests": "nope"}, ["requests"]),
    ({"requests": [{"agent_id": "agent-1", "input": "x"}], "callback_url": "http://example.com:99999/x"},
     ["callback_url"]),
])
def test_given_a_malformed_body_when_posted_then_422_gives_field_paths_and_no_batch_is_created(app, client, body, path):
    response = client.post("/v1/messages/batches", json=body)
    assert response.status_code == 422
    payload = response.get_json()
    assert path in [error["loc"] for error in payload["errors"]]
    assert ".".join(str(p) for p in path) in payload["detail"]
    assert all(set(error) == {"loc", "msg"} for error in payload["errors"])
    for echoed in ("robot", "ftp://", "nope"):  # reasons, never the input echoed back
        assert echoed not in str(payload)
    assert _batch_count(app) == 0


def test_given_a_body_that_is_not_json_when_posted_then_422_says_so(app, client):
    response = client.post("/v1/messages/batches", data="{oops", content_type="application/json")
    assert response.status_code == 422
    assert "JSON" in response.get_json()["detail"]
    assert _batch_count(app) == 0


def test_given_a_private_callback_target_when_private_targets_are_refused_then_422(app, make_app, agent_id, client):
    strict = make_app(callback_allow_private=False).test_client()
    response = strict.post("/v1/messages/batches", json={
        "requests": [{"agent_id": agent_id, "input": "x"}], "callback_url": "http://127.0.0.1:9/hook"})
    assert response.status_code == 422
    assert "BATCHLINE_CALLBACK_ALLOW_PRIVATE" in response.get_json()["detail"]


@pytest.mark.parametrize("host", [*NON_PUBLIC_ADDRESSES, *OTHER_SPELLINGS])
def test_given_a_callback_to_any_non_public_range_when_a_batch_is_posted_then_422_names_callback_url(
        app, make_app, host):
    strict_app = make_app(callback_allow_private=False)
    strict = strict_app.test_client()
    agent = strict.post("/v1/agents/", json={"model": "simulated/echo"}).get_json()["id"]
    response = strict.post("/v1/messages/batches", json={
        "requests": [{"agent_id": agent, "input": "x"}], "callback_url": f"http://{host}:8080/hook"})
    assert response.status_code == 422
    assert [error["loc"] for error in response.get_json()["errors"]] == [["callback_url"]]
    assert _batch_count(strict_app) == 0


def test_given_an_unknown_batch_when_retrieved_cancelled_or_listed_then_404(client):
    for response in (client.get("/v1/messages/batches/job-nope"),
                     client.patch("/v1/messages/batches/job-nope/cancel"),
                     client.get("/v1/messages/batches/job-nope/messages"),
                     client.get("/v1/messages/batches/job-nope/requests")):
        assert response.status_code == 404
        assert "job-nope" in response.get_json()["detail"]


def test_given_a_completed_batch_when_cancelled_then_409_and_it_stays_completed(app, client, agent_id):
    batch_id = client.post("/v1/messages/batches", json={"requests": [{"agent_id": agent_id, "input": "x"}]}
                           ).get_json()["id"]
    app.extensions["batchline"].store.client.hset(keys.batch(batch_id), mapping={"status": "completed"})
    response = client.patch(f"/v1/messages/batches/{batch_id}/cancel")
    assert response.status_code == 409
    assert "completed" in response.get_json()["detail"]
    assert response.headers["x-should-retry"] == "false"
    assert client.get(f"/v1/messages/batches/{batch_id}").get_json()["status"] == "completed"


def test_given_a_batch_not_yet_started_when_cancelled_twice_then_both_answer_null_and_all_requests_count_cancelled(
        client, agent_id):
    batch_id = client.post("/v1/messages/batches", json={"requests": [{"agent_id": agent_id, "input": "x"}] * 3}
                           ).get_json()["id"]
    for _ in range(2):
        response = client.patch(f"/v1/messages/batches/{batch_id}/cancel")
        assert response.status_code == 200 and response.get_json() is None
    batch = client.get(f"/v1/messages/batches/{batch_id}").get_json()
    assert batch["status"] == "cancelled" and batch["stop_reason"] == "cancelled" and batch["completed_at"]
    assert batch["request_counts"]["cancelled"] == 3 and batch["request_counts"]["pending"] == 0
    items = client.get(f"/v1/messages/batches/{batch_id}/requests").get_json()
    assert [item["status"] for item in items] == ["cancelled"] * 3


def test_given_an_idempotency_key_when_the_same_batch_is_posted_twice_then_one_batch_exists(app, client, agent_id):
    body = {"requests": [{"agent_id": agent_id, "input": "x"}]}
    first = client.post("/v1/messages/batches", json=body, headers={"Idempotency-Key": "k-1"}).get_json()
    second = client.post("/v1/messages/batches", json=body, headers={"Idempotency-Key": "k-1"}).get_json()
    assert first["id"] == second["id"]
    assert _batch_count(app) == 1


def test_given_many_batches_when_listed_with_cursors_then_pages_are_order_relative_and_end_empty(client, agent_id):
    ids = [client.post("/v1/messages/batches", json={"requests": [{"agent_id": agent_id, "input": "x"}]}
                       ).get_json()["id"] for _ in range(7)]
    newest_first = list(reversed(ids))
    seen, after = [], None
    while True:
        page = client.get("/v1/messages/batches", query_string={"limit": 3, **({"after": after} if after else {})}
                          ).get_json()
        if not page:
            break
        seen += [batch["id"] for batch in page]
        after = page[-1]["id"]
    assert seen == newest_first
    asc = client.get("/v1/messages/batches", query_string={"order": "asc", "after": ids[2], "limit": 2}).get_json()
    assert [b["id"] for b in asc] == ids[3:5]
    before = client.get("/v1/messages/batches", query_string={"before": ids[2], "limit": 10}).get_json()
    assert [b["id"] for b in before] == list(reversed(ids[3:]))
    before_asc = client.get("/v1/messages/batches",
                            query_string={"order": "asc", "before": ids[5], "limit": 2}).get_json()
    assert [b["id"] for b in before_asc] == ids[3:5]


def test_given_an_unknown_cursor_when_listing_then_400(client):
    response = client.get("/v1/messages/batches", query_string={"after": "job-unknown"})
    assert response.status_code == 400
    assert "job-unknown" in response.get_json()["detail"]


def test_given_a_limit_over_1000_when_listing_then_422(client):
    assert client.get("/v1/messages/batches", query_string={"limit": 1001}).status_code == 422


def test_given_a_body_over_the_ceiling_when_posted_then_413(app, make_app):
    small = make_app(max_body_bytes=1000).test_client()
    response = small.post("/v1/messages/batches", data=b"x" * 2000, content_type="application/json")
    assert response.status_code == 413
    assert response.get_json() == {"detail": "Request body too large: the limit is 1000 bytes."}


def test_given_10000_requests_when_posted_then_it_is_answered_well_under_a_second(client, agent_id):
    import time

    body = {"requests": [{"agent_id": agent_id, "input": f"question {i}"} for i in range(10_000)]}
    started = time.monotonic()
    response = client.post("/v1/messages/batches", json=body)
    elapsed = time.monotonic() - started
    assert response.status_code == 200
    assert response.get_json()["request_counts"]["total"] == 10_000
    # a correctness bound, not a benchmark: bench/ measures the real figure
    assert elapsed < 5.0


@pytest.mark.parametrize(("request_body", "path"), [
    ({"input": "x" * 8_000_001}, ["requests", 0, "input"]),
    ({"messages": [{"role": "user", "content": "x" * 8_000_001}]}, ["requests", 0, "messages", 0, "content"]),
    ({"messages": [{"role": "user", "content": [{"type": "text", "text": "x" * 8_000_001}]}]},
     ["requests", 0, "messages", 0, "content", 0, "text"]),
])
def test_given_a_message_text_over_its_limit_when_posted_then_422_names_the_field_and_nothing_is_stored(
        app, client, agent_id, request_body, path):
    response = client.post("/v1/messages/batches", json={"requests": [{"agent_id": agent_id, **request_body}]})
    assert response.status_code == 422
    payload = response.get_json()
    assert path in [error["loc"] for error in payload["errors"]]
    assert "8000000 characters" in payload["detail"]
    assert len(response.data) < 10_000  # the reason, never the input echoed back
    assert _batch_count(app) == 0


def test_given_a_message_text_at_its_limit_when_posted_then_it_is_accepted(client, agent_id):
    body = {"requests": [{"agent_id": agent_id, "input": "x" * 8_000_000}]}
    response = client.post("/v1/messages/batches", json=body)
    assert response.status_code == 200
