"""Rate limits are one count per key across every web process: two gunicorn processes (one of
them with two workers) on one Redis, real HTTP."""

from __future__ import annotations

import httpx

from app.embedded_redis import free_port
from tests.support.processes import web_process


def test_given_two_web_processes_when_one_key_calls_both_then_they_share_its_limit(start_service):
    service = start_service(workers=False, BATCHLINE_RATE_LIMIT_PER_MINUTE="6")
    second = service.stack.enter_context(
        web_process(service.env, port=free_port(), log=service.logs / "web2.log", workers=2))
    statuses = [httpx.get(f"{base}/v1/messages/batches", headers=service.auth).status_code
                for base in [service.base_url, second] * 3]
    assert statuses == [200] * 6
    for base in (service.base_url, second):
        throttled = httpx.get(f"{base}/v1/agents/", headers=service.auth)
        assert throttled.status_code == 429, base
        assert "6 calls per minute" in throttled.json()["detail"]
        assert 1 <= int(throttled.headers["Retry-After"]) <= 60
    assert httpx.get(f"{second}/healthz").status_code == 200
    for log in ("web.log", "web2.log"):
        text = (service.logs / log).read_text()
        assert "flask-limiter" not in text and "in-memory storage" not in text.lower(), text[-2000:]
