"""Headless Chromium for browser tests: Debian's `chromium` package driven by Playwright for Python.

Playwright's own browser download (`playwright install`) is never used: it fetches from outside
Debian's registry. The binary comes from apt, installed here when it is missing (CI runs as root)."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlsplit

#: Names the Debian (and Ubuntu) packages give the browser binary.
CHROMIUM_NAMES = ("chromium", "chromium-browser")
#: Hosts a page under test may load from: this machine only.
LOCAL_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
#: apt-get may take a while on a cold cache.
APT_TIMEOUT_S = 900


def find_chromium() -> str | None:
    return next((path for name in CHROMIUM_NAMES if (path := shutil.which(name))), None)


def ensure_chromium() -> str:
    """Path of a Chromium binary, installing Debian's package first when there is none."""
    found = find_chromium()
    if found:
        return found
    if os.geteuid() != 0:
        raise RuntimeError("No chromium binary, and apt-get needs root: run `apt-get install -y chromium`.")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for command in (["apt-get", "update"], ["apt-get", "install", "-y", "--no-install-recommends", "chromium"]):
        subprocess.run(command, check=True, env=env, timeout=APT_TIMEOUT_S)
    found = find_chromium()
    if not found:
        raise RuntimeError("apt-get installed chromium, yet no chromium binary is on PATH.")
    return found


@contextmanager
def headless_chromium(executable: str) -> Iterator[Any]:
    """Playwright's sync API runs an asyncio loop in this thread while it is open: start the fake
    model servers (which run their own loop) before entering."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        # --no-sandbox: CI runs as root, where Chromium refuses its sandbox.
        browser = playwright.chromium.launch(executable_path=executable, headless=True,
                                             args=["--no-sandbox", "--disable-dev-shm-usage"])
        try:
            yield browser
        finally:
            browser.close()


def foreign_requests(urls: list[str]) -> list[str]:
    """The URLs that would have left this machine (data: URLs never do)."""
    return [url for url in urls if urlsplit(url).scheme != "data" and urlsplit(url).hostname not in LOCAL_HOSTS]
