"""`batchline-worker`, the Procfile's worker: Dramatiq worker processes, each replaced when it dies.

Dramatiq's CLI (2.x) has no option to restart a worker child: when one dies (an out-of-memory
kill, an operator's `kill -9`), its main process stops every other child and exits, and honcho
then stops the web process too. So this supervisor runs `--processes` separate
`dramatiq actors --processes 1` commands. When one exits without having been asked to stop, it
logs one WARNING line and starts it again after a backoff (1 s, doubling for each restart within
a minute, at most 30 s); the others keep running. More than `--max-restarts-per-minute` restarts
within a minute is a crash loop that a restart will not cure: it logs one ERROR line, stops the
rest and exits 1, so the process manager (honcho) stops the service where an operator sees it.
A start-up error (Dramatiq's exit codes 2, a module that fails to import; 3, the broker refused at
start-up; 4, a pid file) is not retried either: the same start would fail the same way.

The work of a dead process is not lost: its items are under leases (`BATCHLINE_ITEM_LEASE_S`)
and its unacked messages go back to the queue once its heartbeat is missed
(`BATCHLINE_WORKER_HEARTBEAT_TIMEOUT_S`), so the replacement, or any other worker, takes them over.

Signals: SIGTERM and SIGINT mean "stop": the first is forwarded once to each Dramatiq main
process, and repeats are ignored (honcho signals the whole process group, so Dramatiq's
processes got it directly too; the workers absorb the duplicate, see actors/signals.py). SIGHUP
is forwarded (Dramatiq reloads its workers). The supervisor is a child subreaper: a worker left
behind by a killed Dramatiq main process becomes its child, and is stopped before the
replacement starts, so no orphan keeps working on its own.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import logging
import os
import signal
import subprocess
import sys
import time
from collections import deque
from collections.abc import Sequence
from pathlib import Path

from pydantic import ValidationError

from app.logs import configure_process_logging
from app.priority import lower_session_group
from app.settings import Settings, invalid_settings_message

#: BATCHLINE_WORKER_NICE's default, for a command of its own (`-- cmd`) when the settings are invalid.
DEFAULT_WORKER_NICE = Settings.model_fields["worker_nice"].default
#: Restarts (all processes together) within RESTART_WINDOW_S beyond which the supervisor gives up.
DEFAULT_MAX_RESTARTS_PER_MINUTE = 5
#: Exit status when the settings are invalid (nothing was started).
INVALID_SETTINGS_EXIT_STATUS = 2
RESTART_WINDOW_S = 60.0
#: First delay before a restart; it doubles for each restart of the same process within the window.
DEFAULT_BACKOFF_S = 1.0
BACKOFF_MAX_S = 30.0
#: Dramatiq's exit codes for start-up errors a restart cannot cure: RET_IMPORT, RET_CONNECT, RET_PIDFILE.
FATAL_EXIT_CODES = frozenset({2, 3, 4})
_POLL_S = 0.1
_PR_SET_CHILD_SUBREAPER = 36

logger = logging.getLogger("batchline.worker")


class Slot:
    """One Dramatiq main process (with its one worker child), restarted when it dies."""

    def __init__(self, *, index: int, command: Sequence[str]) -> None:
        self.index = index
        self.command = list(command)
        self.process: subprocess.Popen | None = None
        self.restart_at: float | None = None
        self.restarts: deque[float] = deque()

    def start(self) -> None:
        self.process = subprocess.Popen(self.command)
        self.restart_at = None

    def exit_code(self) -> int | None:
        return None if self.process is None else self.process.poll()

    def signal(self, signum: int) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signum)


class Supervisor:
    def __init__(self, *, command: Sequence[str], processes: int,
                 max_restarts_per_minute: int = DEFAULT_MAX_RESTARTS_PER_MINUTE,
                 backoff_s: float = DEFAULT_BACKOFF_S) -> None:
        self.slots = [Slot(index=n + 1, command=command) for n in range(processes)]
        self.max_restarts = max_restarts_per_minute
        self.backoff_s = backoff_s
        self.stop_signal: int | None = None
        #: Signals received and not yet forwarded (handlers only record them: the loop acts).
        self.received: list[int] = []
        self.restarts: deque[float] = deque()
        self.orphans: set[int] = set()

    def run(self) -> int:
        _become_subreaper()
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(signum, lambda signum, _: self.received.append(signum))
        for slot in self.slots:
            slot.start()
        while True:
            while self.received:
                self._on_signal(self.received.pop(0))
            if self.stop_signal is not None:
                return self._wait_for_exit()
            for slot in self.slots:
                code = slot.exit_code()
                if code is not None and slot.restart_at is None:
                    failure = self._on_exit(slot, code)
                    if failure is not None:
                        return failure
                elif slot.restart_at is not None and time.monotonic() >= slot.restart_at:
                    slot.start()
            self._reap_orphans()
            time.sleep(_POLL_S)

    def _on_signal(self, signum: int) -> None:
        if signum == signal.SIGHUP:
            self._forward(signum)
        elif self.stop_signal is None:  # a repeated stop is the same request, delivered again
            self.stop_signal = signum
            self._forward(signum)

    def _forward(self, signum: int) -> None:
        for slot in self.slots:
            slot.signal(signum)
        for pid in self.orphans:
            _kill(pid, signal.SIGTERM)

    def _on_exit(self, slot: Slot, code: int) -> int | None:
        """A process exited unasked: schedule its restart, or return the exit code to give up with."""
        self._adopt_orphans()
        if code in FATAL_EXIT_CODES:
            logger.error("worker %d exited with code %d (a start-up error: see the lines above); "
                         "not restarting it, stopping the others", slot.index, code)
            return self._give_up(code)
        now = time.monotonic()
        for restarts in (self.restarts, slot.restarts):
            restarts.append(now)
            while restarts and now - restarts[0] > RESTART_WINDOW_S:
                restarts.popleft()
        if len(self.restarts) > self.max_restarts:
            logger.error("worker processes exited %d times within %.0f s (limit %d): a crash loop; "
                         "stopping the others and exiting", len(self.restarts), RESTART_WINDOW_S, self.max_restarts)
            return self._give_up(1)
        delay_s = min(BACKOFF_MAX_S, self.backoff_s * 2 ** (len(slot.restarts) - 1))
        logger.warning("worker %d (pid %d) exited with code %d without being asked to stop (%s); "
                       "starting it again in %g s", slot.index, slot.process.pid, code, _why(code), delay_s)
        slot.restart_at = now + delay_s
        return None

    def _give_up(self, code: int) -> int:
        self.stop_signal = signal.SIGTERM
        self._forward(signal.SIGTERM)
        self._wait_for_exit()
        return code

    def _wait_for_exit(self) -> int:
        codes = [slot.process.wait() for slot in self.slots if slot.process is not None and slot.restart_at is None]
        while self.orphans:
            self._reap_orphans()
            time.sleep(_POLL_S)
        return next((code for code in codes if code not in (0, -signal.SIGTERM, -signal.SIGINT)), 0)

    def _adopt_orphans(self) -> None:
        """Workers whose Dramatiq main process was killed are now our children: stop them."""
        own = {slot.process.pid for slot in self.slots if slot.process is not None}
        for pid in _children(os.getpid()) - own - self.orphans:
            logger.warning("stopping pid %d, a worker left behind by its dead main process", pid)
            _kill(pid, signal.SIGTERM)
            self.orphans.add(pid)

    def _reap_orphans(self) -> None:
        for pid in list(self.orphans):
            try:
                done, _ = os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                done = pid
            if done:
                self.orphans.discard(pid)


def _why(code: int) -> str:
    if code < 0:
        return f"killed by {signal.Signals(-code).name}"
    if code == 1:
        return "one of its worker processes died, or it was killed"
    return "see the lines above"


def _kill(pid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signum)


def _children(pid: int) -> set[int]:
    """Processes whose parent is `pid`, from /proc (`task/*/children` is not in every kernel)."""
    found = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                found.add(int(entry.name))
        except (OSError, IndexError, ValueError):
            continue
    return found


def _become_subreaper() -> None:
    """Linux: orphaned descendants are re-parented to this process instead of init."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="batchline-worker",
        description="Run Dramatiq worker processes over `actors`, each restarted when it dies.",
        epilog="Other options (e.g. --threads 16) are passed to each `dramatiq actors --processes 1`. "
               "After `--`, a whole command to run instead of dramatiq.")
    parser.add_argument("--processes", type=int, default=2, help="worker processes (each its own dramatiq)")
    parser.add_argument("--max-restarts-per-minute", type=int, default=DEFAULT_MAX_RESTARTS_PER_MINUTE)
    parser.add_argument("--backoff-s", type=float, default=DEFAULT_BACKOFF_S, help="first delay before a restart")
    argv = list(sys.argv[1:] if argv is None else argv)
    own, command = (argv[:argv.index("--")], argv[argv.index("--") + 1:]) if "--" in argv else (argv, [])
    args, passed_on = parser.parse_known_args(own)
    if args.processes < 1:
        parser.error("--processes must be at least 1")
    # the shape of Dramatiq's own lines, which share the output
    configure_process_logging("[%(asctime)s] [PID %(process)d] [%(threadName)s] [%(name)s] [%(levelname)s] %(message)s")
    try:
        settings = Settings()  # each worker reads them at start: a bad one would only crash-loop there
    except ValidationError as exc:
        if not command:
            logger.error("%s The workers do not start.", invalid_settings_message(exc))
            sys.exit(INVALID_SETTINGS_EXIT_STATUS)
        settings = None
    # The session's group (when it is ours) before the first worker starts; each worker process lowers its
    # own priority once it has started the embedded Redis (actors/middleware.py), which must not inherit it.
    lower_session_group(settings.worker_nice if settings is not None else DEFAULT_WORKER_NICE)
    command = command or [sys.executable, "-m", "app.dramatiq_cli", "actors", "--processes", "1", *passed_on]
    sys.exit(Supervisor(command=command, processes=args.processes, max_restarts_per_minute=args.max_restarts_per_minute,
                        backoff_s=args.backoff_s).run())


if __name__ == "__main__":
    main()
