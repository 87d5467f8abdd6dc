"""The worker process's garbage collector settings, taken in a process of its own (they would
change this test process's collector)."""

from __future__ import annotations

import json
import subprocess
import sys

from actors.gc_tuning import YOUNG_COLLECTION_THRESHOLD

BOOT = """
import gc, json, sys
from actors.middleware import RuntimeMiddleware
from app.settings import Settings
before = gc.get_threshold()
RuntimeMiddleware(settings=Settings(worker_nice=0), redis_url=sys.argv[1]).after_process_boot(None)
print(json.dumps({"before": before, "after": gc.get_threshold(), "frozen": gc.get_freeze_count()}))
"""


def test_given_a_worker_process_booting_when_booted_then_its_collector_runs_rarely_and_skips_the_imports(
        redis_url: str) -> None:
    out = subprocess.run([sys.executable, "-c", BOOT, redis_url], capture_output=True, text=True, check=True,
                         timeout=60)
    seen = json.loads(out.stdout.strip().splitlines()[-1])
    assert seen["before"][0] == 700  # CPython's default, as the process started
    assert seen["after"] == [YOUNG_COLLECTION_THRESHOLD, *seen["before"][1:]]
    assert seen["frozen"] > 10_000  # the imports: modules, classes, pydantic schemas
