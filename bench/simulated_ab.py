"""The simulated/ throughput row of `python -m bench`, side by side: this checkout's worker and
another tree's (e.g. an export of main), interleaved on one deployment, with the raw no-op
Dramatiq actor's ceiling measured between them.

    git archive main | tar -x -C /tmp/main
    python -m bench.simulated_ab /tmp/main [--requests 5000] [--rounds 2]

Each round runs both sides (the order alternates) and then the ceiling again; the web process
and redis-server are this checkout's for both sides (only the worker's code differs).
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path
from typing import Any

from bench import figures
from bench.harness import ZERO_DELAY, deployment, load


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("other", help="the other tree: its workers run with PYTHONPATH=OTHER")
    parser.add_argument("--requests", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="simulated-ab-") as tmp, deployment(Path(tmp)) as dep:
        def ceiling() -> None:
            measured = figures.raw_ceiling(dep, messages=10_000, threads=8)
            rows.append({"side": "raw no-op actor", "load": load(), "per_s": round(measured["messages_per_s"])})
            print(json.dumps(rows[-1]), flush=True)

        def simulated(side: str) -> None:
            env = {"PYTHONPATH": args.other} if side == "other" else {}
            figures.ZERO_DELAY = {**ZERO_DELAY, **env}  # the worker's environment in figures.simulated
            try:
                measured = figures.simulated(dep, requests=args.requests, processes=1, threads=8,
                                             message_bytes=False)
            finally:
                figures.ZERO_DELAY = ZERO_DELAY
            rows.append({"side": side, "load": load(), "per_s": round(measured["items_per_s"]),
                         "worker_cpu_ms_per_item": round(measured["worker_cpu_ms_per_item"], 3),
                         "redis_cpu_ms_per_item": round(measured["redis_cpu_ms_per_item"], 3),
                         "redis_commands_per_item": round(measured["redis_commands_per_item"], 2),
                         "redis_bytes_per_item": round(measured["redis_bytes_per_item"])})
            print(json.dumps(rows[-1]), flush=True)

        ceiling()
        for number in range(args.rounds):
            for side in (("this", "other") if number % 2 == 0 else ("other", "this")):
                simulated(side)
            ceiling()


if __name__ == "__main__":
    main()
