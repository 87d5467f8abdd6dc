"""The README's SDK snippet runs as written against a real service (only its base URL is
pointed at the service under test) and prints what the README promises."""

from __future__ import annotations

import re
import subprocess
import sys

from tests.support.processes import REPO

README_BASE_URL = "http://127.0.0.1:8283"
REQUESTS = 100


def readme_sdk_snippet() -> str:
    readme = (REPO / "README.md").read_text()
    block = re.search(r"Try it with the official SDK.*?```python\n(.*?)```", readme, re.S)
    assert block, "README.md must show a python snippet after 'Try it with the official SDK'"
    return block.group(1)


def test_given_the_readme_sdk_snippet_when_it_runs_against_the_service_then_it_prints_the_completed_batch_and_echoes(
        start_service, tmp_path):
    snippet = readme_sdk_snippet()
    assert snippet.count(README_BASE_URL) == 1
    assert f"range({REQUESTS})" in snippet
    service = start_service(BATCHLINE_SIMULATED_TTFT_MS="50", BATCHLINE_SIMULATED_TOKEN_MS="5")
    script = tmp_path / "snippet.py"
    script.write_text(snippet.replace(README_BASE_URL, service.base_url))

    run = subprocess.run([sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-3000:]

    first, *messages = run.stdout.splitlines()
    status, stop_reason, ttft_ns, total_duration_ns = first.split()
    assert (status, stop_reason) == ("completed", "end_turn")
    assert 0 < int(ttft_ns) <= int(total_duration_ns)
    assert sorted(messages) == sorted([f"user hello {i}" for i in range(REQUESTS)]
                                      + [f"assistant echo: hello {i}" for i in range(REQUESTS)])
