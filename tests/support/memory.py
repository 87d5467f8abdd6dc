"""Resident memory of a process tree, sampled from /proc while a test runs."""

from __future__ import annotations

import os
import threading
from pathlib import Path

_PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")


def _children_by_parent() -> dict[int, list[int]]:
    """Every process's children, from each one's stat (`task/*/children` is not in every kernel)."""
    by_parent: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        parent = int(stat.rsplit(")", 1)[1].split()[1])
        by_parent.setdefault(parent, []).append(int(entry.name))
    return by_parent


def children(pid: int) -> list[int]:
    """The processes whose parent is `pid`."""
    return sorted(_children_by_parent().get(pid, []))


def descendants(pid: int) -> list[int]:
    """The pid and all processes below it."""
    by_parent = _children_by_parent()
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        todo.extend(by_parent.get(current, []))
    return found


def rss_bytes(pid: int) -> int:
    try:
        return int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * _PAGE_SIZE
    except (OSError, IndexError, ValueError):
        return 0


class PeakRss:
    """Records the largest resident size any single process of a tree reaches, sampling every
    `interval_s` in a background thread, while used as a context manager."""

    def __init__(self, root_pid: int, *, interval_s: float = 0.05) -> None:
        self.root_pid = root_pid
        self.interval_s = interval_s
        self.peak_bytes = 0
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _sample(self) -> None:
        while not self._stop.is_set():
            for pid in descendants(self.root_pid):
                self.peak_bytes = max(self.peak_bytes, rss_bytes(pid))
            self.samples += 1
            self._stop.wait(self.interval_s)
