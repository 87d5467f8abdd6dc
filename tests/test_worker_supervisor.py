"""`batchline-worker` over real processes (small Python commands in place of dramatiq): what it
restarts, when it gives up, and how it stops. The Procfile end to end: tests/e2e/test_worker_supervisor.py."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from tests.e2e.conftest import wait_until
from tests.support.processes import BIN


def _supervise(tmp_path: Path, script: str, *options: str) -> tuple[subprocess.Popen, Path, Path]:
    """Start the supervisor over `python -c script`; the script appends its pid to `starts`."""
    starts, log = tmp_path / "starts", tmp_path / "supervisor.log"
    record_start = f"import os, sys, time\nopen({str(starts)!r}, 'a').write(f'{{os.getpid()}}\\n')\n"
    program = record_start + textwrap.dedent(script)
    with open(log, "ab") as out:
        process = subprocess.Popen([str(BIN / "batchline-worker"), *options, "--", sys.executable, "-c", program],
                                   stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    return process, starts, log


def _started(starts: Path) -> list[int]:
    return [int(line) for line in starts.read_text().split()] if starts.exists() else []


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_given_a_process_that_keeps_dying_then_it_is_restarted_with_a_doubling_backoff_until_the_cap(tmp_path):
    process, starts, log = _supervise(tmp_path, "sys.exit(1)", "--processes", "1", "--backoff-s", "0.2",
                                      "--max-restarts-per-minute", "3")
    assert process.wait(timeout=30) == 1
    assert len(_started(starts)) == 4  # the first start and three restarts, then the fourth exit gives up
    text = log.read_text()
    assert text.count("[WARNING]") == 3 and "starting it again in 0.2 s" in text and "again in 0.8 s" in text
    assert text.count("[ERROR]") == 1 and "crash loop" in text
    assert "Traceback" not in text


def test_given_a_start_up_error_exit_code_then_it_is_not_restarted(tmp_path):
    process, starts, log = _supervise(tmp_path, "sys.exit(2)", "--processes", "2")
    assert process.wait(timeout=30) == 2
    assert len(_started(starts)) == 2
    assert "[WARNING]" not in log.read_text() and "a start-up error" in log.read_text()


def test_given_one_of_two_processes_killed_then_only_it_is_replaced_and_the_other_keeps_running(tmp_path):
    process, starts, log = _supervise(tmp_path, "time.sleep(120)", "--processes", "2", "--backoff-s", "0.1")
    try:
        assert wait_until(lambda: len(_started(starts)) == 2, timeout_s=10)
        victim, survivor = _started(starts)
        os.kill(victim, signal.SIGKILL)
        assert wait_until(lambda: len(_started(starts)) == 3, timeout_s=10)
        assert _alive(survivor) and not _alive(victim)
        assert log.read_text().count("killed by SIGKILL") == 1
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=10)


def test_given_honcho_signals_the_whole_group_twice_then_every_process_stops_and_none_is_restarted(tmp_path):
    # a process that, like a dramatiq main, stops on SIGTERM (after a moment) with exit code 0
    script = """
        import signal
        got = []
        signal.signal(signal.SIGTERM, lambda *_: got.append(1))
        while not got:
            time.sleep(0.05)
        time.sleep(0.5)
        sys.exit(0)
    """
    process, starts, log = _supervise(tmp_path, script, "--processes", "2", "--backoff-s", "0.1")
    assert wait_until(lambda: len(_started(starts)) == 2, timeout_s=10)
    time.sleep(0.3)  # the handlers of both processes are installed
    os.killpg(process.pid, signal.SIGTERM)
    os.killpg(process.pid, signal.SIGINT)
    assert process.wait(timeout=10) == 0
    assert len(_started(starts)) == 2
    assert not any(_alive(pid) for pid in _started(starts))
    assert "[WARNING]" not in log.read_text()


def test_given_a_main_process_killed_when_its_child_is_left_behind_then_the_orphan_is_stopped_and_a_new_one_starts(
        tmp_path):
    orphans = tmp_path / "orphans"
    script = f"""
        if os.fork() == 0:
            open({str(orphans)!r}, 'a').write(f'{{os.getpid()}}\\n')
        time.sleep(120)
    """
    process, starts, log = _supervise(tmp_path, script, "--processes", "1", "--backoff-s", "0.1")
    try:
        assert wait_until(lambda: orphans.exists() and len(orphans.read_text().split()) == 1, timeout_s=10)
        orphan = int(orphans.read_text().split()[0])
        os.kill(_started(starts)[0], signal.SIGKILL)
        assert wait_until(lambda: not _alive(orphan), timeout_s=10)
        assert wait_until(lambda: len(_started(starts)) == 2, timeout_s=10)
        assert f"stopping pid {orphan}" in log.read_text()
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=10)


def test_given_an_invalid_setting_when_the_workers_start_then_one_line_names_it_without_its_value_and_none_starts(
        tmp_path):
    env = {key: value for key, value in os.environ.items() if not key.startswith(("BATCHLINE_", "OPENAI_"))}
    env.update({"OPENAI_API_KEY": "sk-secret\x01value", "BATCHLINE_CHUNK_SIZE": "lots",
                "BATCHLINE_VAR_DIR": str(tmp_path)})
    run = subprocess.run([str(BIN / "batchline-worker"), "--processes", "1"], env=env, cwd=tmp_path,
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 2
    output = run.stdout + run.stderr
    assert output.count("\n") == 1 and "Traceback" not in output
    assert "Invalid settings: OPENAI_API_KEY, BATCHLINE_CHUNK_SIZE" in output
    assert "secret" not in output and "lots" not in output
    assert not (tmp_path / "redis.port").exists()  # nothing was started
