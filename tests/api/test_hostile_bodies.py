"""Bodies a careless or hostile client can send: each is a 4xx with a `detail` sentence, never a
500, and stores nothing. Real Redis, Flask's test client."""

from __future__ import annotations

import json
import random
import re
from itertools import accumulate

import pytest

from app.api.body_guard import MAX_JSON_DEPTH, json_depth
from app.store import keys

#: Replaced by a real agent id in each body, so that only the hostile part can be refused.
AGENT = "AGENT_ID"
VALID = '{"requests": [{"agent_id": "AGENT_ID", "input": "hi"}]}'
TWO_MB = 2 * 1024 * 1024


def _nested(levels: int) -> str:
    """A valid batch whose metadata nests objects so that the body is `levels` deep in all."""
    inner = "1"
    for _ in range(levels - 1):
        inner = '{"a": ' + inner + "}"
    return '{"requests": [{"agent_id": "AGENT_ID", "input": "hi"}], "metadata": ' + inner + "}"


HOSTILE = [
    # (id, body bytes, content type, status, words the detail must hold)
    ("nested-1000-arrays", b"[" * 1000 + b"]" * 1000, "application/json", 422, "limit is 64"),
    ("nested-100k-arrays", b"[" * 100_000 + b"]" * 100_000, "application/json", 422, "limit is 64"),
    ("nested-objects-in-metadata", _nested(MAX_JSON_DEPTH + 1).encode(), "application/json", 422, "limit is 64"),
    ("unclosed-nesting", b'{"requests": ' + b"[" * 5000, "application/json", 422, "limit is 64"),
    ("text-plain", VALID.encode(), "text/plain", 415, "application/json"),
    ("form-encoded", b"requests=1", "application/x-www-form-urlencoded", 415, "application/json"),
    ("no-content-type", VALID.encode(), None, 415, "application/json"),
    ("latin-1-charset", VALID.encode(), "application/json; charset=latin-1", 415, "UTF-8"),
    ("null", b"null", "application/json", 422, "null"),
    ("empty", b"", "application/json", 422, "no body"),
    ("whitespace", b" \r\n\t ", "application/json", 422, "no body"),
    ("empty-array", b"[]", "application/json", 422, "an array"),
    ("array-of-the-body", f"[{VALID}]".encode(), "application/json", 422, "an array"),
    ("string", b'"{\\"requests\\": []}"', "application/json", 422, "a string"),
    ("number", b"42", "application/json", 422, "a number"),
    ("boolean", b"true", "application/json", 422, "a boolean"),
    ("not-json", b"{oops", "application/json", 422, "not a valid JSON document"),
    ("truncated", VALID[:-3].encode(), "application/json", 422, "not a valid JSON document"),
    ("trailing-garbage", VALID.encode() + b" x", "application/json", 422, "not a valid JSON document"),
    ("utf-8-bom", b"\xef\xbb\xbf" + VALID.encode(), "application/json", 422, "not a valid JSON document"),
    ("invalid-utf-8", VALID.replace("hi", "h\xffi").encode("latin-1"), "application/json", 422, "UTF-8"),
    ("utf-16", VALID.encode("utf-16"), "application/json", 422, "UTF-8"),
    ("lone-surrogate", VALID.replace("hi", "\\ud800").encode(), "application/json", 422, "surrogate"),
    ("nan", VALID.replace("]}", '], "metadata": {"x": NaN}}').encode(), "application/json", 422, "NaN"),
    ("infinity", VALID.replace("]}", '], "metadata": {"x": -Infinity}}').encode(), "application/json", 422,
     "Infinity"),
    ("float-overflow", VALID.replace("]}", '], "metadata": {"x": 1e999}}').encode(), "application/json", 422,
     "too large"),
    ("int-over-64-bits", VALID.replace("]}", '], "metadata": {"x": 9223372036854775808}}').encode(),
     "application/json", 422, "64 bits"),
    ("int-of-5000-digits", VALID.replace("]}", '], "metadata": {"x": ' + "9" * 5000 + "}}").encode(),
     "application/json", 422, "digits"),
    ("max-steps-of-40-digits", VALID.replace('"hi"', '"hi", "max_steps": ' + "9" * 40).encode(),
     "application/json", 422, "64 bits"),
    ("duplicate-keys", VALID.replace("{", '{"requests": [], ', 1).encode(), "application/json", 422,
     "'requests' twice"),
    ("2-MB-agent-id", VALID.replace("AGENT_ID", "a" * TWO_MB).encode(), "application/json", 422,
     "requests.0.agent_id"),
    ("2-MB-string-as-requests", json.dumps({"requests": "r" * TWO_MB}).encode(), "application/json", 422,
     "requests"),
    ("2-MB-unknown-field-and-no-input", json.dumps({"requests": [{"agent_id": AGENT, "x": "y" * TWO_MB}]}).encode(),
     "application/json", 422, "exactly one"),
    ("max-steps-over-the-ceiling", VALID.replace('"hi"', '"hi", "max_steps": 1001').encode(), "application/json",
     422, "requests.0.max_steps"),
]


@pytest.fixture
def agent_id(client) -> str:
    return client.post("/v1/agents/", json={"model": "simulated/echo"}).get_json()["id"]


@pytest.mark.parametrize(("body", "content_type", "status", "words"), [case[1:] for case in HOSTILE],
                         ids=[case[0] for case in HOSTILE])
def test_given_a_hostile_body_when_a_batch_is_posted_then_a_clear_4xx_and_nothing_is_stored(
        app, client, agent_id, body, content_type, status, words):
    headers = {"Content-Type": content_type} if content_type else {}
    response = client.post("/v1/messages/batches", data=body.replace(AGENT.encode(), agent_id.encode()),
                           headers=headers)
    assert response.status_code == status, response.data[:300]
    detail = response.get_json()["detail"]
    assert words in detail
    assert len(response.data) < 2000  # a sentence, never the input echoed back
    assert app.extensions["batchline"].store.client.zcard(keys.BATCHES) == 0


@pytest.mark.parametrize(("path", "body"), [
    ("/v1/agents/", b"[" * 1000 + b"]" * 1000),
    ("/v1/agents", b"null"),
    ("/v1/agents/{agent}/messages", b"[" * 1000 + b"]" * 1000),
    ("/v1/agents/{agent}/messages", b""),
    ("/v1/agents/{agent}/messages", b'{"input": "hi", "max_steps": NaN}'),
])
def test_given_a_hostile_body_when_an_agent_route_is_posted_then_a_clear_4xx(client, agent_id, path, body):
    response = client.post(path.format(agent=agent_id), data=body, content_type="application/json")
    assert response.status_code == 422 and response.get_json()["detail"].startswith("Invalid request: body:")


def test_given_a_body_nested_exactly_to_the_limit_when_posted_then_it_is_accepted(client, agent_id):
    body = _nested(MAX_JSON_DEPTH).replace(AGENT, agent_id)
    assert json_depth(body.encode()) == MAX_JSON_DEPTH
    response = client.post("/v1/messages/batches", data=body, content_type="application/json")
    assert response.status_code == 200, response.data[:300]


@pytest.mark.parametrize("text", ['[ "]]]]" , "\\"[[[[" ]', '["\\\\", [["\\\\\\"{{"]]]', '{"a": "[\\u005b"}'])
def test_given_brackets_and_escapes_inside_strings_when_the_depth_is_measured_then_only_structure_counts(text):
    def reference(value: object) -> int:
        return 1 + max(map(reference, value.values() if isinstance(value, dict) else value), default=0) \
            if isinstance(value, dict | list) else 0

    assert json_depth(text.encode()) == reference(json.loads(text))


def test_given_an_accepted_body_with_escapes_and_a_surrogate_pair_when_posted_then_it_is_stored_as_sent(
        client, agent_id):
    text = 'quote " backslash \\ bracket [ emoji \U0001F600 é'
    body = json.dumps({"requests": [{"agent_id": agent_id, "input": text}], "metadata": {"note": text}})
    response = client.post("/v1/messages/batches", data=body, content_type="application/json; charset=utf-8")
    assert response.status_code == 200 and response.get_json()["metadata"]["note"] == text


def test_given_a_body_over_the_size_limit_when_posted_then_413_states_the_limit(app, make_app):
    small = make_app(max_body_bytes=2 * 1024 * 1024).test_client()
    response = small.post("/v1/messages/batches", data=b"x" * (2 * 1024 * 1024 + 1), content_type="application/json")
    assert response.status_code == 413
    assert response.get_json() == {"detail": "Request body too large: the limit is 2097152 bytes (2 MiB)."}


def test_given_requests_without_a_body_when_sent_to_routes_that_take_none_then_no_body_check_applies(
        client, agent_id):
    batch = client.post("/v1/messages/batches", data=VALID.replace(AGENT, agent_id),
                        content_type="application/json").get_json()
    assert client.patch(f"/v1/messages/batches/{batch['id']}/cancel").status_code == 200
    assert client.options("/v1/messages/batches").status_code == 200


def test_given_random_structure_and_quotes_when_the_depth_is_measured_then_it_matches_pairing_quotes_by_regex():
    def by_regex(data: bytes) -> int:  # json_depth before it dropped side-by-side quote pairs first
        unescaped = data.replace(b"\\\\", b"").replace(b'\\"', b"")
        structure = bytes(byte for byte in unescaped if byte in b'[]{}"')
        brackets = re.sub(rb'"[^"]*"', b"", structure).replace(b'"', b"")
        return max(accumulate(1 if byte in b"[{" else -1 for byte in brackets), default=0)

    randoms = random.Random(10)
    for alphabet in (b'[]{}"\\ax', b'[]""', b'{}"""\\\\'):
        for _ in range(20_000):
            data = bytes(randoms.choice(alphabet) for _ in range(randoms.randint(0, 30)))
            assert json_depth(data) == by_regex(data), data
