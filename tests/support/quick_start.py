"""The README's run command (`honcho start` over the Procfile), started as the README says in a
directory of the test's own, on a port and with a data directory of its own."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

from tests.support.processes import REPO, service_env, wait_http


def quick_start_commands() -> list[str]:
    readme = (REPO / "README.md").read_text()
    block = re.search(r"## Quick start\s+```bash\n(.*?)```", readme, re.S)
    assert block, "README.md must open with a Quick start code block"
    return [line for line in block.group(1).splitlines() if line.strip()]


def start_quick_start(checkout: Path, var_dir: Path, port: int, log: Path, **env: str) -> subprocess.Popen:
    """The README's run command, in a directory holding the Procfile (and no `.env`), with
    `BATCHLINE_PORT` exported as the README says (and `env` too)."""
    run_service = quick_start_commands()[0].split("&&")[-1].strip()
    shutil.copy(REPO / "Procfile", checkout / "Procfile")
    env = service_env(None, BATCHLINE_VAR_DIR=str(var_dir), BATCHLINE_PORT=str(port), **env)
    with open(log, "ab") as out:
        process = subprocess.Popen(["bash", "-c", run_service], cwd=checkout, env=env, stdout=out,
                                   stderr=subprocess.STDOUT, start_new_session=True)
    wait_http(f"http://127.0.0.1:{port}/readyz", timeout_s=60, process=process)
    return process


def embedded_redis_port(var_dir: Path) -> int:
    return int((var_dir / "redis.port").read_text())
