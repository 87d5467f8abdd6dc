"""`batchline monitor` reads GET /v1/monitor as the monitoring contract shapes it. The server here
is a test fixture: a tiny local HTTP server answering one contract-shaped snapshot (the real route
is tested where it is implemented)."""

from __future__ import annotations

import json
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tests.e2e.test_cli import BATCHLINE, run_cli

SNAPSHOT = {
    "generated_at": "2026-11-30T05:00:00Z",
    "queues": [{"name": name, "ready": 3, "delayed": 1, "in_flight": 2, "dead": 7, "latency_s": 0.25}
               for name in ("batches", "items", "callbacks")],
    "workers": [{"id": "host-a:4242:abcd", "host": "host-a", "pid": 4242, "threads": 16, "items_in_flight": 5,
                 "streams_open": 4, "started_at": "2026-11-30T04:00:00Z", "last_seen_at": "2026-11-30T04:59:59Z"}],
    "models": {"streams_in_flight": 4, "completed_per_min_1m": 120.0, "completed_per_min_5m": 90.5,
               "ttft_p50_s": 0.123, "ttft_p95_s": 0.456},
    "throughput": [{"minute": "2026-11-30T04:59:00Z", "finished": 100, "failed": 2}],
    "batches": [{"id": "job-running-1", "status": "running", "created_at": "2026-11-30T04:58:00Z",
                 "request_counts": {"total": 100, "pending": 40, "running": 10, "succeeded": 50, "errored": 0,
                                    "cancelled": 0, "expired": 0},
                 "throughput_per_s": 2.5, "eta_s": 20.0}],
    "recent_batches": [{"id": "job-done-2", "status": "completed", "created_at": "2026-11-30T04:00:00Z",
                        "request_counts": {"total": 5, "pending": 0, "running": 0, "succeeded": 5, "errored": 0,
                                           "cancelled": 0, "expired": 0},
                        "throughput_per_s": None, "eta_s": None}],
    "reconciler": {"last_sweep_at": None, "duration_ms": None, "last": {}, "totals": {}},
}


class _Fixture(BaseHTTPRequestHandler):
    seen: list[tuple[str, str | None]] = []

    def do_GET(self) -> None:
        _Fixture.seen.append((self.path, self.headers.get("Authorization")))
        body = json.dumps(SNAPSHOT).encode()
        self.send_response(200 if self.path == "/v1/monitor" else 404)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def monitor_fixture() -> Iterator[str]:
    _Fixture.seen = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Fixture)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_given_a_contract_snapshot_when_monitor_once_runs_then_queues_workers_models_and_batches_are_shown(
        monitor_fixture):
    shown = run_cli("monitor", "--once", url=monitor_fixture, BATCHLINE_API_KEY="k-123")

    assert shown.returncode == 0, shown.stderr
    for text in ("batches", "items", "callbacks", "0.2 s", "host-a:4242:abcd", "4242", "0.123 s", "0.456 s",
                 "job-running-1", "2.5", "20 s", "job-done-2", "completed"):
        assert text in shown.stdout, text
    assert _Fixture.seen == [("/v1/monitor", "Bearer k-123")]


def test_given_monitor_live_when_it_runs_then_it_refreshes_and_ctrl_c_leaves_without_a_traceback(monitor_fixture):
    process = subprocess.Popen([str(BATCHLINE), "monitor"], env={"BATCHLINE_URL": monitor_fixture, "PATH": "/usr/bin"},
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 30
    while len(_Fixture.seen) < 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=10)

    assert len(_Fixture.seen) >= 2  # refreshed at least once after the first view
    assert process.returncode == 130
    assert "Traceback" not in out + err and "job-running-1" in out
