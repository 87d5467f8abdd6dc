"""POST /v1/messages/batches reads its body from the request stream: the requests reach Redis a
blob at a time while the body is still arriving, under keys that expire until the create commits
them, and a body refused at any point leaves nothing behind. Real Redis, Flask's test client, the
body handed to the app in pieces."""

from __future__ import annotations

import io
import json
from collections.abc import Callable

import pytest

from app.schemas.batches import MAX_REQUESTS_PER_BATCH
from app.store import keys

#: Read sizes the body is cut into: one byte at a time, odd pieces, and whole.
READ_SIZES = [1, 7, 4096, None]


class PiecewiseBody(io.BytesIO):
    """A request body served at most `piece` bytes per read, calling `at_half` once the reader
    asks for more after it has been given half of the body."""

    def __init__(self, data: bytes, *, piece: int | None = None, at_half: Callable[[], None] | None = None) -> None:
        super().__init__(data)
        self.half, self.piece, self.at_half = len(data) // 2, piece, at_half

    def read(self, size: int | None = -1) -> bytes:
        if self.at_half is not None and self.tell() >= self.half:
            self.at_half()
            self.at_half = None
        if self.piece is not None:
            size = self.piece if size is None or size < 0 else min(size, self.piece)
        return super().read(size)

    def readinto(self, buffer: bytearray) -> int:  # what werkzeug's LimitedStream calls
        data = self.read(len(buffer))
        buffer[:len(data)] = data
        return len(data)


def _post(client, data: bytes, *, piece: int | None = None, at_half: Callable[[], None] | None = None,
          headers: dict[str, str] | None = None):
    return client.post("/v1/messages/batches", input_stream=PiecewiseBody(data, piece=piece, at_half=at_half),
                       content_type="application/json", headers=headers or {})


def _request_keys(store) -> list[str]:
    return sorted(store.client.scan_iter(match=f"{keys.PREFIX}batch:*"))


@pytest.fixture
def agent_id(client) -> str:
    return client.post("/v1/agents/", json={"model": "simulated/echo"}).get_json()["id"]


@pytest.fixture
def store(app):
    return app.extensions["batchline"].store


def test_given_a_large_body_arriving_in_pieces_when_half_has_been_read_then_its_first_requests_are_in_redis_unlisted_and_expiring(  # noqa: E501
        client, store, agent_id):
    body = json.dumps({"requests": [{"agent_id": agent_id, "input": f"question {i}"} for i in range(20_000)],
                       "metadata": {"after": "the requests"}}).encode()
    seen: dict[str, object] = {}

    def at_half() -> None:
        staged = [key for key in _request_keys(store) if ":requests:" in key]
        seen.update(staged=len(staged), ttls={store.client.ttl(key) for key in staged},
                    listed=store.client.zcard(keys.BATCHES))

    response = _post(client, body, piece=64 * 1024, at_half=at_half)

    assert response.status_code == 200, response.data[:300]
    assert seen["staged"] > 0 and seen["listed"] == 0
    assert all(ttl > 0 for ttl in seen["ttls"])
    batch = response.get_json()
    assert batch["request_counts"]["total"] == 20_000 and batch["metadata"]["after"] == "the requests"
    assert {store.client.ttl(key) for key in _request_keys(store) if batch["id"] in key} == {-1}


@pytest.mark.parametrize("piece", READ_SIZES)
def test_given_fields_before_and_after_the_requests_with_whitespace_and_escapes_when_posted_in_pieces_then_all_are_stored_as_sent(  # noqa: E501
        client, store, agent_id, piece):
    text = 'caf\u00e9 \U0001F600 "quoted" [bracket] },{ tab\t'
    requests = [{"agent_id": agent_id, "input": f"{text} {i}"} for i in range(120)]
    requests[7] = {"agent_id": agent_id, "messages": [{"role": "user", "content": "a"}, {"role": "user",
                                                                                        "content": "b"}]}
    body = ('{\r\n "metadata" : {"note": ' + json.dumps(text) + '},\n "requests":\n\t'
            + json.dumps(requests, indent=2) + ' ,\n "callback_url": "https://example.com/hook"\n}\n').encode()

    response = _post(client, body, piece=piece)

    assert response.status_code == 200, response.data[:300]
    batch = response.get_json()
    assert batch["request_counts"]["total"] == 120 and batch["metadata"]["note"] == text
    assert batch["callback_url"] == "https://example.com/hook"
    lines = "\n".join(store.client.get(keys.batch_requests(batch["id"], number)) or ""
                       for number in range(3)).splitlines()
    assert [json.loads(line).get("input") for line in lines] == [request.get("input") for request in requests]


@pytest.mark.parametrize("piece", [7, None])
def test_given_a_bad_request_near_the_end_of_a_large_batch_when_posted_then_a_422_names_it_and_nothing_is_left(
        client, store, agent_id, piece):
    requests = [{"agent_id": agent_id, "input": f"q{i}"} for i in range(3_000)]
    requests[2_998] = {"agent_id": agent_id}
    response = _post(client, json.dumps({"requests": requests}).encode(), piece=piece)

    assert response.status_code == 422
    assert response.get_json()["detail"] == ('Invalid request: requests.2998: Value error, give exactly one of '
                                             '"messages" or "input".')
    assert _request_keys(store) == [] and store.client.zcard(keys.BATCHES) == 0


@pytest.mark.parametrize(("body", "words"), [
    (b'{"requests": [{"agent_id": "AGENT", "input": "hi"}, {"agent_id": "AGENT", "inp', "not a valid JSON document"),
    (b'{"requests": [{"agent_id": "AGENT", "input": "hi"}]', "Expecting ',' delimiter"),
    (b'{"requests": [{"agent_id": "AGENT", "input": "hi"}], "requests": []}', "'requests' twice"),
    (b'{"requests": [{"agent_id": "AGENT", "input": "hi"}, 7]}', "requests.1: Input should be a valid dictionary"),
    (b'{"callback_url": "https://example.com", "requests": {"agent_id": "AGENT"}}',
     "requests: Input should be a valid list"),
    (b'{"requests": [], "metadata": {}}', "requests: List should have at least 1 item"),
    (b'{"requests": [{"agent_id": "AGENT", "input": "\\ud800"}]}', "surrogate"),
    (b'{"requests": [{"agent_id": "AGENT", "input": "hi", "max_steps": 1e999}]}', "too large for a double"),
    (b'{"requests": [{"agent_id": "AGENT", "input": "hi", "x": ' + b"[" * 62 + b"]" * 62 + b"}]}", "limit is 64"),
    (b'{"requests": [{"agent_id": "AGENT", "input": "hi"}]} []', "Extra data"),
])
@pytest.mark.parametrize("piece", [1, None])
def test_given_a_body_refused_part_way_when_posted_then_a_clear_422_and_nothing_is_left(
        client, store, agent_id, body, words, piece):
    response = _post(client, body.replace(b"AGENT", agent_id.encode()), piece=piece)

    assert response.status_code == 422, response.data[:300]
    assert words in response.get_json()["detail"]
    assert _request_keys(store) == [] and store.client.zcard(keys.BATCHES) == 0


def test_given_a_body_cut_short_by_the_client_when_posted_then_a_clear_400_and_nothing_is_left(
        client, store, agent_id):
    body = json.dumps({"requests": [{"agent_id": agent_id, "input": f"q{i}"} for i in range(2_000)]}).encode()
    response = client.post("/v1/messages/batches", input_stream=PiecewiseBody(body[:len(body) // 2]),
                           content_type="application/json", environ_overrides={"CONTENT_LENGTH": str(len(body))})

    assert response.status_code == 400
    assert response.get_json()["detail"] == ("The request body ended before the Content-Length it declared; send "
                                             "the whole body.")
    assert _request_keys(store) == []


def test_given_an_idempotency_key_when_the_same_batch_is_sent_spaced_and_ordered_differently_then_one_batch(
        client, agent_id):
    requests = [{"agent_id": agent_id, "input": f"q{i}", "max_steps": 3} for i in range(200)]
    compact = json.dumps({"requests": requests, "metadata": {"a": 1, "b": 2}}, separators=(",", ":"))
    spaced = json.dumps({"metadata": {"b": 2, "a": 1},
                         "requests": [dict(reversed(request.items())) for request in requests]}, indent=3)
    changed = compact.replace('"q199"', '"q200"')

    first = _post(client, compact.encode(), headers={"Idempotency-Key": "k"})
    again = _post(client, spaced.encode(), piece=5, headers={"Idempotency-Key": "k"})
    other = _post(client, changed.encode(), headers={"Idempotency-Key": "k"})

    assert first.status_code == again.status_code == 200 and first.get_json()["id"] == again.get_json()["id"]
    assert other.status_code == 409


def test_given_more_requests_than_a_batch_holds_when_posted_then_a_422_counts_them_and_nothing_is_left(
        client, store, agent_id):
    line = json.dumps({"agent_id": agent_id, "input": "q"}).encode()
    body = b'{"requests": [' + b",".join([line] * (MAX_REQUESTS_PER_BATCH + 1)) + b"]}"

    response = _post(client, body)

    assert response.status_code == 422
    assert response.get_json()["detail"] == (f"Invalid request: requests: List should have at most "
                                             f"{MAX_REQUESTS_PER_BATCH} items after validation, not "
                                             f"{MAX_REQUESTS_PER_BATCH + 1}.")
    assert _request_keys(store) == []


def test_given_megabytes_of_whitespace_before_the_object_when_posted_then_the_batch_is_created(client, agent_id):
    """The whitespace is read a piece at a time and joined once (it was joined on every read, which
    took about 20 s for these 16 MB: docs/performance.md; no timed assertion here)."""
    body = b" \n" * (8 * 1024 * 1024) + json.dumps({"requests": [{"agent_id": agent_id, "input": "hi"}]}).encode()

    response = _post(client, body)

    assert response.status_code == 200, response.data[:300]
    assert response.get_json()["request_counts"]["total"] == 1
