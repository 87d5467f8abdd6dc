"""Worker processes run at BATCHLINE_WORKER_NICE (app/priority.py), read from /proc of real
processes: started by batchline-worker (small Python commands in place of dramatiq) or by the
dramatiq CLI itself; the session's scheduling group is lowered only when the session is theirs."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from app.priority import autogroup_nice
from tests.e2e.conftest import wait_until
from tests.support.memory import children, descendants
from tests.support.processes import BIN, _wait_for_log, service_env, spawn, stop, worker_process


def _sessions_get_a_group() -> bool:
    """Whether a process that starts a session of its own gets a scheduling group of its own.
    Asked of such a process, not of this one: a kernel without autogroup has no
    /proc/<pid>/autogroup, and a process still in the boot session's group (a container's
    processes that never called setsid, as on CI) reads it empty while its new sessions do not."""
    probe = subprocess.run(
        [sys.executable, "-c", "from app.priority import autogroup_nice; print(autogroup_nice())"],
        start_new_session=True, capture_output=True, text=True, check=True, cwd=Path(__file__).parents[1])
    return probe.stdout.strip() != "None"


AUTOGROUP = _sessions_get_a_group()


def _nice(pid: int | str) -> int:
    """The nice value of a process (or a thread: /proc/<pid>/task/<tid>), stat field 19."""
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[16])


def _lowered_to(nice: int) -> int:
    """What a setting of `nice` gives a process started from this one: never a higher priority
    than it inherited (a test runner started niced keeps its value)."""
    return max(nice, _nice(os.getpid()))


def _thread_nices(pid: int) -> set[int]:
    return {_nice(f"{pid}/task/{tid}") for tid in os.listdir(f"/proc/{pid}/task")}


@contextmanager
def _supervised(tmp_path: Path, *, own_session: bool, **env: str) -> Iterator[int]:
    """batchline-worker over one `python -c` worker; yields the worker's pid."""
    started = tmp_path / "started"
    program = f"import os, time\nopen({str(started)!r}, 'w').write(str(os.getpid()))\ntime.sleep(60)\n"
    with open(tmp_path / "supervisor.log", "ab") as log:
        process = subprocess.Popen(
            [str(BIN / "batchline-worker"), "--processes", "1", "--", sys.executable, "-c", program],
            env={**os.environ, **env}, cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=own_session)
    try:
        assert wait_until(lambda: started.exists() and started.read_text().strip(), timeout_s=15)
        yield int(started.read_text())
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=15)


def _parent(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


def _processes(match: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and match in (entry / "cmdline").read_bytes().decode(errors="replace"):
                found.append(int(entry.name))
        except OSError:
            continue
    return found


def test_given_a_worker_nice_of_7_when_batchline_worker_starts_its_workers_then_they_run_at_7_and_redis_does_not(
        tmp_path):
    """The Procfile's worker on the embedded Redis, which a worker starts (and must not slow down)."""
    env = service_env(None, BATCHLINE_VAR_DIR=str(tmp_path / "var"), BATCHLINE_WORKER_NICE="7")
    log = tmp_path / "worker.log"
    process = spawn([str(BIN / "batchline-worker"), "--processes", "2", "--threads", "2"], env=env, cwd=tmp_path,
                    log=log)
    try:
        _wait_for_log(log, "Worker process is ready", count=2, process=process)
        dramatiq = set(_processes("app.dramatiq_cli")) & set(descendants(process.pid))
        workers = [pid for pid in dramatiq if _parent(pid) in dramatiq]  # a dramatiq main's children
        assert len(workers) == 2
        assert all(_thread_nices(pid) == {_lowered_to(7)} for pid in workers)
        if AUTOGROUP:  # spawn() gave the supervisor a session of its own, as honcho does
            assert autogroup_nice(process.pid) == 7
        port = (tmp_path / "var" / "redis.port").read_text().strip()
        redis_servers = [pid for pid in _processes(f"127.0.0.1:{port}")
                         if "redis-server" in Path(f"/proc/{pid}/cmdline").read_text()]
        assert redis_servers and all(_nice(pid) == _nice(os.getpid()) for pid in redis_servers)
        if AUTOGROUP:
            assert all(autogroup_nice(pid) == 0 for pid in redis_servers)
    finally:
        stop(process)


def test_given_a_worker_nice_of_7_when_batchline_worker_starts_in_its_own_session_then_its_group_runs_at_7(
        tmp_path):
    with _supervised(tmp_path, own_session=True, BATCHLINE_WORKER_NICE="7") as worker:
        assert autogroup_nice(worker) == (7 if AUTOGROUP else None)


def test_given_a_session_shared_with_its_starter_when_batchline_worker_starts_then_the_group_is_left_alone(tmp_path):
    ours = autogroup_nice()
    with _supervised(tmp_path, own_session=False, BATCHLINE_WORKER_NICE="7") as worker:
        assert autogroup_nice(worker) == ours  # this test runner is not slowed down


def test_given_a_worker_nice_of_0_when_batchline_worker_starts_then_the_priority_is_left_alone(tmp_path):
    with _supervised(tmp_path, own_session=True, BATCHLINE_WORKER_NICE="0") as worker:
        assert _nice(worker) == _nice(os.getpid())
        assert autogroup_nice(worker) == (0 if AUTOGROUP else None)


def test_given_the_dramatiq_cli_started_directly_when_its_worker_boots_then_every_thread_runs_at_the_setting(
        redis_url, tmp_path):
    env = service_env(redis_url, BATCHLINE_VAR_DIR=str(tmp_path / "var"), BATCHLINE_WORKER_NICE="5")
    with worker_process(env, log=tmp_path / "worker.log", threads=4) as main:
        workers = children(main.pid)
        assert len(workers) == 1
        assert _thread_nices(workers[0]) == {_lowered_to(5)}
        if AUTOGROUP:  # dramatiq leads a session of its own here (as under a process manager)
            assert autogroup_nice(workers[0]) == 5


def test_given_an_autogroup_file_that_is_empty_or_missing_when_read_then_there_is_no_group_to_lower(
        tmp_path, monkeypatch):
    """Some sandboxes show /proc/<pid>/autogroup empty (seen on CI); a kernel without autogroup has none."""
    import app.priority as priority

    (tmp_path / "self").mkdir()
    (tmp_path / "self" / "autogroup").write_text("")
    (tmp_path / "42").mkdir()
    (tmp_path / "42" / "autogroup").write_text("/autogroup-9 nice 3\n")
    monkeypatch.setattr(priority, "_PROC", tmp_path)

    assert autogroup_nice() is None
    assert autogroup_nice(42) == 3
    assert autogroup_nice(43) is None
    assert priority.lower_session_group(7) is False
    assert (tmp_path / "self" / "autogroup").read_text() == ""
