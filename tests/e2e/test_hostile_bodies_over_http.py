"""The hostile-body table of tests/api/test_hostile_bodies.py, sent over real HTTP to the real
web process (gunicorn): what a client can send gets the same clear 4xx there, never a 500, and
nothing is stored; a body over the size ceiling is a 413 that states the limit."""

from __future__ import annotations

import json
import socket

import httpx
import pytest
import redis

from tests.api.test_hostile_bodies import AGENT, HOSTILE


@pytest.fixture(scope="module")
def web(shared_service):
    agent_id = httpx.post(f"{shared_service.base_url}/v1/agents/", headers=shared_service.auth,
                          json={"model": "simulated/echo"}).json()["id"]
    return shared_service, agent_id


@pytest.mark.parametrize(("body", "content_type", "status", "words"), [case[1:] for case in HOSTILE],
                         ids=[case[0] for case in HOSTILE])
def test_given_a_hostile_body_over_http_when_a_batch_is_posted_then_a_clear_4xx_and_nothing_is_stored(
        web, body, content_type, status, words):
    service, agent_id = web
    store = redis.Redis.from_url(service.env["REDIS_URL"])
    before = store.zcard("bl:batches")
    headers = {**service.auth, **({"Content-Type": content_type} if content_type else {})}
    response = httpx.post(f"{service.base_url}/v1/messages/batches", content=body.replace(AGENT.encode(),
                          agent_id.encode()), headers=headers, timeout=30)
    assert response.status_code == status, response.text[:300]
    assert words in response.json()["detail"]
    assert len(response.content) < 2000
    assert store.zcard("bl:batches") == before


def _raw_post(service, head: bytes, body: bytes) -> tuple[int, dict]:
    """POST /v1/messages/batches with a hand-made head and body on a raw socket (httpx frames
    bodies correctly; these are not), the client's side half-closed after the body."""
    url = httpx.URL(service.base_url)
    auth = "".join(f"{name}: {value}\r\n" for name, value in service.auth.items()).encode()
    with socket.create_connection((url.host, url.port), timeout=30) as sock:
        sock.sendall(b"POST /v1/messages/batches HTTP/1.1\r\nHost: batchline\r\nContent-Type: application/json\r\n"
                     + auth + head + b"Connection: close\r\n\r\n" + body)
        sock.shutdown(socket.SHUT_WR)
        answer = b"".join(iter(lambda: sock.recv(65536), b""))
    status_line, _, rest = answer.partition(b"\r\n")
    return int(status_line.split()[1]), json.loads(rest.partition(b"\r\n\r\n")[2])


def _chunked(data: bytes, size: int = 4096) -> bytes:
    return b"".join(b"%x\r\n%s\r\n" % (len(data[at:at + size]), data[at:at + size])
                    for at in range(0, len(data), size))


@pytest.mark.parametrize(("framing", "status", "detail"), [
    (b"zz\r\nxx\r\n0\r\n\r\n", 400, "The request body's chunked transfer encoding is malformed; send it again."),
    (b"", 400, "The request body ended before its last chunk; send the whole body."),
])
def test_given_a_chunked_body_badly_framed_or_cut_when_a_batch_is_posted_then_a_clear_400_and_nothing_is_stored(
        web, framing, status, detail):
    service, agent_id = web
    store = redis.Redis.from_url(service.env["REDIS_URL"])
    before = set(store.scan_iter(match="bl:batch*"))
    body = json.dumps({"requests": [{"agent_id": agent_id, "input": f"q{i}"} for i in range(3000)]}).encode()

    answer = _raw_post(service, b"Transfer-Encoding: chunked\r\n", _chunked(body[:100_000]) + framing)

    assert answer == (status, {"detail": detail})
    assert set(store.scan_iter(match="bl:batch*")) == before


def test_given_a_body_shorter_than_its_content_length_over_http_when_the_client_stops_then_a_clear_400(web):
    """gunicorn hands the app a short body as if it were whole: the create says it was cut, as
    werkzeug's own stream makes it say, rather than what the cut left unparsable."""
    service, agent_id = web
    store = redis.Redis.from_url(service.env["REDIS_URL"])
    before = set(store.scan_iter(match="bl:batch*"))
    body = json.dumps({"requests": [{"agent_id": agent_id, "input": f"q{i}"} for i in range(3000)]}).encode()

    answer = _raw_post(service, b"Content-Length: %d\r\n" % len(body), body[:len(body) // 2])

    assert answer == (400, {"detail": "The request body ended before the Content-Length it declared; send the "
                                      "whole body."})
    assert set(store.scan_iter(match="bl:batch*")) == before


# Last: start_service empties Redis, and with it the shared service's key.
def test_given_a_body_over_the_ceiling_over_http_when_posted_then_413_states_the_limit(start_service):
    service = start_service(workers=False, BATCHLINE_MAX_BODY_BYTES=str(1024 * 1024))
    response = httpx.post(f"{service.base_url}/v1/messages/batches", content=b"x" * (1024 * 1024 + 1),
                          headers={**service.auth, "Content-Type": "application/json"}, timeout=30)
    assert response.status_code == 413
    assert response.json() == {"detail": "Request body too large: the limit is 1048576 bytes (1 MiB)."}
