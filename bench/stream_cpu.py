"""Worker CPU per streamed request, this checkout against another source tree, interleaved on one
Redis, one web process and one local OpenAI-compatible streaming fake (bench/fake_model.py):
`--rounds` pairs, the order alternating (this, other; other, this; ...) so that a change of the
machine's load falls on both sides alike.

    git archive main | tar -x -C /tmp/stream-before
    python -m bench.stream_cpu /tmp/stream-before [--requests 2000] [--rounds 3] [--profile DIR]

Each run is `bench.figures.streaming` (2 processes x 16 threads, 1 s to first token), the figure of
`python -m bench`. With `--profile`, py-spy (`record --gil --format raw`, 250 Hz, every worker
process) samples each run into DIR, and the samples are split by where they were taken.
"""

from __future__ import annotations

import argparse
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from bench import figures
from bench.harness import Deployment, deployment, load
from bench.per_item import parse_raw_profile

#: Where a py-spy sample is counted: the first category, in this order, with a marker in any frame of
#: its stack (so a Redis call of the claim counts as the claim, not as "redis client").
CATEGORIES = [
    ("SSE parsing (app/providers/events.py; before: iter_sse, iter_lines)",
     ("app/providers/events.py", "iter_sse ", "iter_lines ")),
    ("chunk handling (_Accumulator, decode_json)", ("_Accumulator", "decode_json ")),
    ("request body build and encoding", ("encode_body ", "build_body ", "build_messages ", "JsonPayload",
                                         "app/providers/wire.py")),
    ("aiohttp: request, connection, response", ("aiohttp/", "aiohappyeyeballs/")),
    ("rest of the model call (open_sse, retries, app/providers)", ("app/providers/",)),
    ("prompt (app/engine/prompt.py)", ("app/engine/prompt.py",)),
    ("claim and item start (claim_and_load)", ("claim_and_load", "item_start.py")),
    ("commit (commit_run)", ("commit_run", "app/engine/commit.py")),
    ("other Redis calls", ("redis/",)),
    ("Dramatiq's consumer and worker threads", ("dramatiq/worker.py", "dramatiq/brokers/")),
    ("rest of the item (app/engine, actors)", ("app/", "actors/")),
    ("asyncio event loop", ("asyncio/",)),
]


@contextmanager
def _profiled(dep: Deployment, out: Path | None) -> Any:
    """py-spy on the worker started next (found as the dramatiq process that appears), if `out`."""
    if out is None:
        yield
        return
    known = set(_dramatiq_parents())
    profiler: list[subprocess.Popen] = []
    stop = threading.Event()

    def attach() -> None:
        while not stop.is_set():
            fresh = [pid for pid in _dramatiq_parents() if pid not in known]
            if fresh and _ready(dep.directory):
                py_spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
                profiler.append(subprocess.Popen(
                    [py_spy, "record", "--gil", "--subprocesses", "--pid", str(fresh[0]), "--rate", "250",
                     "--format", "raw", "--output", str(out)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
                return
            time.sleep(0.05)

    watcher = threading.Thread(target=attach, daemon=True)
    watcher.start()
    try:
        yield
    finally:
        stop.set()
        watcher.join()
        for each in profiler:
            each.send_signal(signal.SIGINT)
            each.wait(timeout=60)


def _ready(directory: Path) -> bool:
    """Whether the newest worker log says all its processes are ready: the profile then holds
    the batch, not the imports of starting up."""
    logs = sorted(directory.glob("worker-*.log"), key=lambda path: path.stat().st_mtime)
    if not logs:
        return False
    name = logs[-1].name  # worker-<processes>x<threads>-<ns>.log
    processes = int(name.split("-")[1].split("x")[0])
    return logs[-1].read_text(errors="replace").count("Worker process is ready") >= processes


def _dramatiq_parents() -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().split(b"\0")
            status = (entry / "status").read_text()
        except OSError:
            continue
        ppid = next((line.split()[1] for line in status.splitlines() if line.startswith("PPid:")), "")
        if any(part.endswith(b"/dramatiq") for part in cmdline[:2]) and b"actors" in cmdline:
            parent_cmd = Path(f"/proc/{ppid}/cmdline")
            try:
                if b"dramatiq" in parent_cmd.read_bytes():
                    continue  # a worker child: py-spy --subprocesses finds those from the parent
            except OSError:
                pass
            found.append(int(entry.name))
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("other", type=Path, help="a tree holding app/ and actors/ (e.g. an export of main)")
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--threads", type=int, default=16)
    parser.add_argument("--ttft-s", type=float, default=1.0)
    parser.add_argument("--profile", type=Path, help="directory for py-spy's raw profiles (one per run)")
    parser.add_argument("--only-this", action="store_true", help="measure this checkout only (with --profile)")
    args = parser.parse_args()
    sides = [("this", {})] + ([] if args.only_this else [("other", {"PYTHONPATH": str(args.other.resolve())})])
    if args.profile:
        args.profile.mkdir(parents=True, exist_ok=True)
    rows = []
    with tempfile.TemporaryDirectory(prefix="batchline-stream-cpu-") as tmp, deployment(Path(tmp)) as dep:
        base_env = dict(dep.env)
        for round_ in range(args.rounds):
            for name, extra in (sides if round_ % 2 == 0 else sides[::-1]):
                dep.env = {**base_env, **extra}
                out = args.profile / f"{name}-{round_ + 1}.txt" if args.profile else None
                at = load()
                with _profiled(dep, out):
                    r = figures.streaming(dep, requests=args.requests, processes=args.processes,
                                          threads=args.threads, ttft_s=args.ttft_s)
                rows.append((round_ + 1, name, r, at, out))
                print(f"round {round_ + 1}, {name}: {r['worker_cpu_ms_per_request']:.2f} ms CPU/request, wall "
                      f"{r['seconds']:.1f} s, {r['max_open_streams']} streams open at most (load {at})", flush=True)
    print(f"\nthis = {Path.cwd()}, other = {args.other}")
    print("| round | tree | worker CPU ms/request | wall s | load before |\n|---|---|---|---|---|")
    for round_, name, r, at, _ in rows:
        print(f"| {round_} | {name} | {r['worker_cpu_ms_per_request']:.2f} | {r['seconds']:.1f} | {at} |")
    for round_, name, _, _, out in rows:
        if out is None or not out.exists():
            continue
        split = parse_raw_profile(out, CATEGORIES, rest="other")
        total = sum(split.values()) or 1
        # Shares only: the profiler slows the worker, so its CPU figure is not the unprofiled one.
        print(f"\nround {round_} {name}: {total} samples")
        for category, count in split.most_common():
            print(f"  {100 * count / total:5.1f} %  {category}")


if __name__ == "__main__":
    main()
