"""The web process's memory while it takes a 100,000-request batch, in a real gunicorn: the body
is read from the request stream a blob at a time, so the worker grows by a small multiple of the
body at most, never by its parse (it grew by 16-26 times the body when it parsed it whole)."""

from __future__ import annotations

import json
from pathlib import Path

import httpx

from tests.support.memory import PeakRss, descendants, rss_bytes

REQUESTS = 100_000
#: The bound: the worker's resident growth during the POST, against the body's size.
MAX_GROWTH_VS_BODY = 4.0


def _gunicorn_worker(base_url: str) -> int:
    """The gunicorn worker (the master's child) serving `base_url`."""
    bind = f"127.0.0.1:{base_url.rsplit(':', 1)[1]}"
    for entry in Path("/proc").iterdir():
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except (OSError, ValueError):
            continue
        if "gunicorn" in cmdline and bind in cmdline:
            workers = [pid for pid in descendants(int(entry.name)) if pid != int(entry.name)]
            if workers:
                return workers[0]
    raise LookupError(f"no gunicorn worker serves {base_url}")


def test_given_a_100k_request_batch_when_posted_then_the_web_worker_grows_by_at_most_4x_the_body(start_service):
    service = start_service(workers=False, BATCHLINE_BATCH_REQUESTS_PER_HOUR="0")
    with httpx.Client(base_url=service.base_url, headers=service.auth, timeout=120) as http:
        agent = http.post("/v1/agents/", json={"model": "simulated/echo"}).json()["id"]
        warm = http.post("/v1/messages/batches", json={"requests": [{"agent_id": agent, "input": "warm"}]})
        assert warm.status_code == 200, warm.text
        body = json.dumps({"requests": [{"agent_id": agent, "input": f"question {i}"} for i in range(REQUESTS)],
                           "metadata": {"size": "large"}}).encode()
        worker = _gunicorn_worker(service.base_url)
        before = rss_bytes(worker)
        with PeakRss(worker, interval_s=0.005) as peak:
            created = http.post("/v1/messages/batches", content=body, headers={"Content-Type": "application/json"})

    assert created.status_code == 200, created.text[:300]
    assert created.json()["request_counts"]["total"] == REQUESTS
    assert peak.samples > 10
    growth = peak.peak_bytes - before
    print(f"web worker grew by {growth / 1e6:.1f} MB for a {len(body) / 1e6:.1f} MB body "
          f"({growth / len(body):.1f}x)")
    assert growth <= MAX_GROWTH_VS_BODY * len(body), f"grew by {growth / len(body):.1f}x the body"
