"""The dashboard in a real headless Chromium, against real gunicorn and dramatiq processes: it asks
for the API key (again when one is refused) and keeps it out of URLs and the page, draws a batch's
progress to 100 %, shows no other tenant's batch, cancels another with its button, escapes what
clients sent, fits a phone's screen and loads nothing from outside this machine."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import wait_for_status
from tests.e2e.test_sdk_end_to_end import _openai_agent
from tests.fakes.model_servers import FakeOpenAIServer
from tests.support.browser import ensure_chromium, foreign_requests, headless_chromium
from tests.support.tenants import create_key

#: Each request of the watched batch waits this long for its first token, so the page sees it run.
FIRST_TOKEN_S = 3.0
#: The batch to cancel holds its streams longer than the test lasts.
HOLD_S = 60.0
#: Longer than two polls of the page (2 s each) plus a slow CI machine.
SEE_MS = 30_000
HOSTILE = '<img src="/x" id="injected">'
DESKTOP = {"width": 1280, "height": 900}
PHONE = {"width": 390, "height": 844}


@pytest.fixture(scope="session")
def chromium_path() -> str:
    return ensure_chromium()


def _open(browser: Any, url: str, viewport: dict[str, int]) -> tuple[Any, list[str], list[str]]:
    page = browser.new_page(viewport=viewport)
    requested: list[str] = []
    problems: list[str] = []
    page.on("request", lambda request: requested.append(request.url))
    page.on("pageerror", lambda error: problems.append(f"uncaught: {error}"))
    page.on("console", lambda message: problems.append(message.text)
            if "Content Security Policy" in message.text else None)
    page.on("dialog", lambda dialog: dialog.accept())
    page.goto(url)
    return page, requested, problems


def _enter_key(page: Any, key: str) -> None:
    from playwright.sync_api import expect

    expect(page.locator("#key-form")).to_be_visible(timeout=SEE_MS)
    page.get_by_label("API key").fill(key)
    page.get_by_role("button", name="Open dashboard").click()


def test_given_the_dashboard_open_when_a_batch_runs_and_another_is_cancelled_by_its_button_then_the_page_shows_both_from_local_requests_only(  # noqa: E501
        start_service, chromium_path: str, tmp_path: Path, redis_url: str):
    from playwright.sync_api import expect

    with FakeOpenAIServer(first_token_delay_s=FIRST_TOKEN_S) as quick, \
            FakeOpenAIServer(first_token_delay_s=HOLD_S) as held, headless_chromium(chromium_path) as browser:
        service = start_service()
        client = service.client()
        other = service.client(api_key=create_key(redis_url, tenant="b"))
        theirs = other.batches.create(requests=[{"agent_id": _openai_agent(other, quick).id, "input": "b"}])
        page, requested, problems = _open(browser, f"{service.base_url}/dashboard", DESKTOP)
        # No key yet: the page asks for one, says why, and shows no data.
        expect(page.locator("#key-note")).to_contain_text("Missing API key", timeout=SEE_MS)
        expect(page.locator("#content")).to_be_hidden()
        _enter_key(page, "bl_" + "x" * 40)
        expect(page.locator("#key-note")).to_contain_text("That API key was refused", timeout=SEE_MS)
        _enter_key(page, service.api_key)
        expect(page.locator("#updated")).to_contain_text("updated", timeout=SEE_MS)
        expect(page.locator("#key-form")).to_be_hidden()
        assert page.evaluate("window.sessionStorage.getItem('batchline.apiKey')") == service.api_key
        monitor_missing = httpx.get(f"{service.base_url}/v1/monitor", headers=service.auth).status_code == 404
        expect(page.locator("#monitor-note")).to_be_visible(visible=monitor_missing)

        agent = _openai_agent(client, quick)
        # metadata is client-controlled text the page must draw as text (the SDK's create has no metadata)
        watched = client.batches.retrieve(httpx.post(f"{service.base_url}/v1/messages/batches", headers=service.auth,
                                                     json={
            "requests": [{"agent_id": agent.id, "input": f"q{i}"} for i in range(6)],
            "metadata": {"label": HOSTILE}}).json()["id"])
        running = page.locator(f'#running li[data-batch-id="{watched.id}"]')
        expect(running.locator('[data-role="status"]')).to_have_text("running", timeout=SEE_MS)
        assert int(running.get_by_role("progressbar").get_attribute("aria-valuenow")) < 100
        done = page.locator(f'#recent li[data-batch-id="{watched.id}"]')
        expect(done.get_by_role("progressbar")).to_have_attribute("aria-valuenow", "100", timeout=SEE_MS)
        expect(done.locator('[data-role="status"]')).to_have_text("completed")
        assert wait_for_status(client, watched.id).status == "completed"
        assert wait_for_status(other, theirs.id).status == "completed"
        expect(page.locator(f'li[data-batch-id="{theirs.id}"]')).to_have_count(0)  # another tenant's batch

        done.click()
        expect(page.locator("#detail-status")).to_have_text("completed", timeout=SEE_MS)
        expect(page.locator("#items tbody tr")).to_have_count(6)
        expect(page.locator("#items tbody")).not_to_contain_text("running")
        expect(page.locator("#ttft svg rect")).not_to_have_count(0)
        expect(page.locator("#detail-fields")).to_contain_text(HOSTILE)  # drawn as text...
        expect(page.locator("#injected")).to_have_count(0)  # ...never as markup
        expect(page.locator("#cancel")).to_be_disabled()
        page.screenshot(path=str(tmp_path / "dashboard-desktop.png"), full_page=True)

        stuck = client.batches.create(requests=[{"agent_id": _openai_agent(client, held).id, "input": "wait"}] * 2)
        assert held.wait_for_open_streams(2, timeout_s=20)
        page.locator(f'#running li[data-batch-id="{stuck.id}"]').click()
        expect(page.locator("#detail-id")).to_have_text(stuck.id, timeout=SEE_MS)
        expect(page.locator("#detail-status")).to_have_text("running", timeout=SEE_MS)
        page.locator("#cancel").click()
        expect(page.locator("#detail-status")).to_have_text("cancelled", timeout=SEE_MS)
        expect(page.locator(f'#recent li[data-batch-id="{stuck.id}"] [data-role="status"]')).to_have_text(
            "cancelled", timeout=SEE_MS)
        assert client.batches.retrieve(stuck.id).status == "cancelled"

        assert service.api_key not in page.content() and service.api_key not in page.url
        phone, phone_requested, phone_problems = _open(browser, f"{service.base_url}/dashboard", PHONE)
        _enter_key(phone, service.api_key)  # another browser context: its own session storage
        expect(phone.locator(f'#recent li[data-batch-id="{stuck.id}"]')).to_be_visible(timeout=SEE_MS)
        # Nothing wider than the phone: wide tables scroll inside their own box, not the page.
        assert phone.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
        phone.screenshot(path=str(tmp_path / "dashboard-phone.png"), full_page=True)

    assert requested and phone_requested
    assert not [url for url in requested + phone_requested if service.api_key in url]
    assert foreign_requests(requested + phone_requested) == []
    assert problems + phone_problems == []
    for name in ("dashboard-desktop.png", "dashboard-phone.png"):
        assert (tmp_path / name).stat().st_size > 10_000


def _monitor_sample(batch_id: str) -> dict[str, Any]:
    """A /v1/monitor answer shaped exactly as docs/monitoring contract says, hostile strings included."""
    now = "2026-01-01T12:00:00Z"
    counts = {"total": 10, "pending": 3, "running": 2, "succeeded": 4, "errored": 1, "cancelled": 0, "expired": 0}
    return {
        "generated_at": now,
        "queues": [{"name": name, "ready": 2, "delayed": 1, "in_flight": 3, "dead": 1 if name == "items" else 0,
                    "latency_s": 1.5 if name == "items" else None} for name in ("batches", "items", "callbacks")],
        "workers": [{"id": "worker-A", "host": HOSTILE, "pid": 4321, "threads": 16, "items_in_flight": 3,
                     "streams_open": 2, "started_at": now, "last_seen_at": now}],
        "models": {"streams_in_flight": 2, "completed_per_min_1m": 12.0, "completed_per_min_5m": 9.5,
                   "ttft_p50_s": 0.42, "ttft_p95_s": 1.7},
        "throughput": [{"minute": f"2026-01-01T11:{m:02d}:00Z", "finished": m % 7, "failed": m % 3}
                       for m in range(60)],
        "batches": [{"id": batch_id, "status": "running", "created_at": now, "request_counts": counts,
                     "throughput_per_s": 0.5, "eta_s": 10.0}],
        "recent_batches": [],
        "reconciler": {"last_sweep_at": now, "duration_ms": 3.0, "last": {}, "totals": {}},
    }


def test_given_a_monitor_answer_of_the_contract_shape_when_drawn_then_every_section_fills_and_the_dead_letter_buttons_call_their_routes(  # noqa: E501
        start_service, chromium_path: str, tmp_path: Path):
    # The monitor API comes from another branch: this pins the page to the contract's field names, by
    # answering /v1/monitor* in the browser while everything else is the real service.
    from playwright.sync_api import Route, expect

    service = start_service(workers=False)
    calls: list[tuple[str, str]] = []
    letters = [{"id": "msg-1", "queue": "items", "actor": HOSTILE, "args": ["job-x", 0],
                "failed_at": "2026-01-01T11:59:00Z", "retries": 3, "batch_id": "job-x"}]

    def monitor(route: Route) -> None:
        method, path = route.request.method, route.request.url.split("?")[0].split("/v1/monitor", 1)[1]
        if route.request.headers.get("authorization") != f"Bearer {service.api_key}":
            route.fulfill(status=401, content_type="application/json", headers={"WWW-Authenticate": "Bearer"},
                          body=json.dumps({"detail": "Missing API key."}))
            return
        calls.append((method, path))
        if path == "":
            body: Any = _monitor_sample("job-sample")
        elif method == "GET":
            body = {"dead_letters": letters}
        else:
            key = "requeued" if method == "POST" else "discarded"
            body = {key: ["msg-1"]}
        route.fulfill(status=200, content_type="application/json", body=json.dumps(body))

    with headless_chromium(chromium_path) as browser:
        page, requested, problems = _open(browser, "about:blank", DESKTOP)
        page.route("**/v1/monitor**", monitor)
        page.goto(f"{service.base_url}/dashboard")
        _enter_key(page, service.api_key)
        expect(page.locator("#queues tbody tr")).to_have_count(3, timeout=SEE_MS)
        expect(page.locator("#monitor-note")).to_be_hidden()
        expect(page.locator("#queues tbody tr").nth(1)).to_contain_text("1.5 s")
        expect(page.locator("#workers tbody")).to_contain_text(HOSTILE)
        expect(page.locator("#models")).to_contain_text("p50 420 ms")
        expect(page.locator("#throughput svg rect.finished")).not_to_have_count(0)
        expect(page.locator("#throughput svg rect.failed")).not_to_have_count(0)
        sample = page.locator('#running li[data-batch-id="job-sample"]')
        expect(sample.get_by_role("progressbar")).to_have_attribute("aria-valuenow", "50")
        expect(sample).to_contain_text("ETA 10.0 s")
        expect(page.locator("#dead tbody")).to_contain_text(HOSTILE)
        expect(page.locator("#injected")).to_have_count(0)
        page.screenshot(path=str(tmp_path / "dashboard-monitor-desktop.png"), full_page=True)

        page.get_by_role("button", name="Requeue", exact=True).click()
        page.get_by_role("button", name="Discard", exact=True).click()
        page.get_by_role("button", name="Requeue all").click()
        with page.expect_request(lambda request: request.method == "DELETE" and request.url.endswith("/dead-letters")):
            page.get_by_role("button", name="Discard all").click()
        page.set_viewport_size(PHONE)
        assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
        page.screenshot(path=str(tmp_path / "dashboard-monitor-phone.png"), full_page=True)

    actions = [call for call in calls if call[0] != "GET"]
    assert actions == [("POST", "/dead-letters/msg-1/requeue"), ("DELETE", "/dead-letters/msg-1"),
                       ("POST", "/dead-letters/requeue"), ("DELETE", "/dead-letters")]
    assert foreign_requests(requested) == [] and problems == []
