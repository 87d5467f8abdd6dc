"""The whole Procfile under honcho, as the README runs it: a worker process killed by the kernel or
an operator is replaced, the web keeps serving, and the killed process's requests still run, once."""

from __future__ import annotations

import os
import signal
import threading
from collections import Counter
from pathlib import Path

import httpx
import redis

from app.embedded_redis import free_port
from tests.e2e.conftest import wait_until
from tests.support.memory import descendants
from tests.support.processes import stop
from tests.support.quick_start import embedded_redis_port, start_quick_start


def _parent(pid: int) -> int | None:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return None


def _is_dramatiq(pid: int | None) -> bool:
    """The process runs the dramatiq CLI (`.../bin/dramatiq` or `python -m app.dramatiq_cli`), not merely a
    command line that mentions it (honcho's shell, with its `dramatiq_*` variables)."""
    try:
        args = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[:3] if pid is not None else []
    except OSError:
        return False
    return any(arg in (b"dramatiq", b"app.dramatiq_cli") or arg.endswith(b"/dramatiq") for arg in args)


def worker_children(root: int) -> set[int]:
    """Dramatiq's worker processes: the children of a dramatiq main process."""
    return {pid for pid in descendants(root) if _is_dramatiq(pid) and _is_dramatiq(_parent(pid))}


class ReadyzPoller:
    """Asks /readyz every 0.1 s in a thread, recording every answer that is not a 200."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self.answers = 0
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def __enter__(self) -> ReadyzPoller:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _poll(self) -> None:
        while not self._stop.is_set():
            try:
                status = httpx.get(f"{self.base_url}/readyz", timeout=2).status_code
                self.answers += 1
                if status != 200:
                    self.failures.append(f"HTTP {status}")
            except httpx.HTTPError as error:
                self.failures.append(repr(error))
            self._stop.wait(0.1)


def test_given_the_procfile_under_honcho_when_a_worker_child_is_killed_then_it_is_replaced_and_the_batch_completes(
        tmp_path):
    var_dir, log, port = tmp_path / "var", tmp_path / "honcho.log", free_port()
    base = f"http://127.0.0.1:{port}"
    process = start_quick_start(
        tmp_path, var_dir, port, log, BATCHLINE_ITEM_LEASE_S="3", BATCHLINE_WORKER_HEARTBEAT_TIMEOUT_S="3",
        BATCHLINE_SIMULATED_TTFT_MS="2500", BATCHLINE_SIMULATED_TOKEN_MS="1", BATCHLINE_CHUNK_SIZE="5",
        BATCHLINE_WORKER_THREADS="4")
    try:
        assert wait_until(lambda: len(worker_children(process.pid)) == 2
                          and log.read_text().count("Worker process is ready") == 2, timeout_s=60), log.read_text()
        before = worker_children(process.pid)
        auth = {"Authorization": f"Bearer {(var_dir / 'api-key').read_text().strip()}"}
        agent = httpx.post(f"{base}/v1/agents/", headers=auth, json={"model": "simulated/echo"}).json()
        requests = [{"agent_id": agent["id"], "input": f"hello {i}"} for i in range(20)]
        batch = httpx.post(f"{base}/v1/messages/batches", headers=auth, json={"requests": requests}).json()
        store = redis.Redis(port=embedded_redis_port(var_dir), decode_responses=True)

        def owners() -> set[int]:
            items = [store.hgetall(f"bl:item:{item['id']}") for item in httpx.get(
                f"{base}/v1/messages/batches/{batch['id']}/requests", headers=auth, params={"limit": 100}).json()]
            return {int(item["lease_owner"].split(":")[1]) for item in items
                    if item.get("status") == "running" and item.get("lease_owner")}

        assert wait_until(lambda: bool(owners()), timeout_s=20)
        victim = next(iter(owners()))
        assert victim in before  # the process running the batch's requests is a dramatiq worker child

        with ReadyzPoller(base) as poller:
            os.kill(victim, signal.SIGKILL)
            assert wait_until(lambda: len(worker_children(process.pid) - before) == 1
                              and log.read_text().count("Worker process is ready") == 3, timeout_s=30), \
                log.read_text()[-3000:]

            def finished() -> bool:
                batch_now = httpx.get(f"{base}/v1/messages/batches/{batch['id']}", headers=auth).json()
                return batch_now["status"] == "completed"

            assert wait_until(finished, timeout_s=90, interval_s=0.2), log.read_text()[-3000:]
        assert poller.failures == [] and poller.answers > 20
        assert process.poll() is None  # honcho still runs: the web was never stopped
        now = worker_children(process.pid)
        assert len(now) == 2 and victim not in now

        done = httpx.get(f"{base}/v1/messages/batches/{batch['id']}", headers=auth).json()
        assert done["request_counts"]["succeeded"] == 20
        messages = httpx.get(f"{base}/v1/messages/batches/{batch['id']}/messages", headers=auth,
                             params={"limit": 1000}).json()
        per_item = Counter((m["batch_item_id"], m["role"]) for m in messages["messages"])
        assert len(per_item) == 40 and set(per_item.values()) == {1}
        assert log.read_text().count("without being asked to stop") == 1
    finally:
        stop(process, sig=signal.SIGINT)
