"""Batch workers are background work: they run at a lower CPU priority (BATCHLINE_WORKER_NICE) so
that, when the cores are busy, the scheduler serves the web process (API calls, polls) first.
An idle machine gives the workers every cycle all the same: niceness only weighs contended CPU.

Two knobs, because Linux has two levels of fairness: a process's nice value weighs it against
the processes of its own session, and, with `kernel.sched_autogroup_enabled` (the default of
most distributions), each session is a group weighed against the other sessions by the group's
own nice value (`/proc/<pid>/autogroup`, sched(7)). Process managers (honcho, systemd) give the
web and the workers a session each, so the process nice alone would change nothing there. The
group's nice is set only when the session is the workers' own (started by a process manager: they
lead it, or a shell that runs nothing else does; no terminal; no other process in it): otherwise
it would slow down whatever else runs in it."""

from __future__ import annotations

import contextlib
import logging
import os
from dataclasses import dataclass
from pathlib import Path

logger = logging.getLogger(__name__)

#: The highest nice value Linux knows (the lowest priority).
MAX_NICE = 19
_PROC = Path("/proc")


@dataclass(frozen=True)
class _Stat:
    pid: int
    ppid: int
    session: int
    tty: int


def lower_priority(nice: int, *, root_pid: int | None = None) -> bool:
    """Run this process's threads (and what they start afterwards) at `nice` or lower priority,
    never higher (a nice value already above it is kept), and `lower_session_group`. For a worker
    process, once it has started what must not inherit its priority (the embedded Redis)."""
    if nice <= 0:
        return False
    for tid in _threads():
        with contextlib.suppress(OSError):  # a thread that just ended
            if os.getpriority(os.PRIO_PROCESS, tid) < min(nice, MAX_NICE):
                os.setpriority(os.PRIO_PROCESS, tid, min(nice, MAX_NICE))
    return lower_session_group(nice, root_pid=root_pid)


def lower_session_group(nice: int, *, root_pid: int | None = None) -> bool:
    """Give this session's scheduling group `nice` (never a higher priority) when the session is
    the workers' own: `root_pid` (the topmost process of the workers, this one by default) or
    its parent leads it, and it holds nothing but their ancestors and the root's subtree, and no
    terminal. True when it was lowered. The processes keep their own nice values: the supervisor
    lowers the group only, so that the embedded Redis a worker may start is not slowed."""
    if nice <= 0:
        return False
    return _nice_session_group(min(nice, MAX_NICE), root_pid or os.getpid())


def autogroup_nice(pid: int | str = "self") -> int | None:
    """The nice value of the process's scheduling group; None without autogroup."""
    try:
        return int((_PROC / str(pid) / "autogroup").read_text().split()[-1])
    except (OSError, ValueError, IndexError):
        return None


def _threads() -> list[int]:
    """Linux's setpriority(PRIO_PROCESS) sets one thread: every thread of the process is set."""
    try:
        return [int(entry.name) for entry in (_PROC / "self" / "task").iterdir()]
    except OSError:
        return [0]


def _nice_session_group(nice: int, root_pid: int) -> bool:
    current = autogroup_nice()
    if current is None or current >= nice:
        return False
    stats = _stats()
    own = stats.get(os.getpid())
    if own is None or own.tty != 0:
        return False
    family = _ancestors(root_pid, stats) | _subtree(root_pid, stats)
    strangers = [stat.pid for stat in stats.values() if stat.session == own.session and stat.pid not in family]
    if not _leads_session(root_pid, own.session, stats):
        return False  # started from a program that shares the session (a test runner, a script): leave it be
    if strangers:
        logger.info("Worker processes run at nice %d within their session; its group keeps nice %d, since it also "
                    "holds other processes (e.g. pid %d)", nice, current, strangers[0])
        return False
    try:
        (_PROC / "self" / "autogroup").write_text(str(nice))
    except OSError as exc:
        logger.info("Could not lower the priority of the workers' session group (%s)", exc)
        return False
    return True


def _leads_session(root_pid: int, session: int, stats: dict[int, _Stat]) -> bool:
    """The root leads the session, or its parent does and runs nothing else (honcho's `sh -c`)."""
    if session == root_pid:
        return True
    root = stats.get(root_pid)
    return root is not None and root.ppid == session and \
        [stat.pid for stat in stats.values() if stat.ppid == session] == [root_pid]


def _stats() -> dict[int, _Stat]:
    found = {}
    for entry in _PROC.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        found[int(entry.name)] = _Stat(pid=int(entry.name), ppid=int(fields[1]), session=int(fields[3]),
                                       tty=int(fields[4]))
    return found


def _ancestors(pid: int, stats: dict[int, _Stat]) -> set[int]:
    found = set()
    while pid in stats and pid not in found:
        found.add(pid)
        pid = stats[pid].ppid
    return found


def _subtree(pid: int, stats: dict[int, _Stat]) -> set[int]:
    children: dict[int, list[int]] = {}
    for stat in stats.values():
        children.setdefault(stat.ppid, []).append(stat.pid)
    found, todo = set(), [pid]
    while todo:
        each = todo.pop()
        if each not in found:
            found.add(each)
            todo.extend(children.get(each, []))
    return found
