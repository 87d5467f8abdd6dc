"""GET batch latency while a large batch streams, this checkout against another tree, interleaved:

    git archive main | tar -x -C /tmp/get-before
    python -m bench.get_latency --compare /tmp/get-before [--rounds 3] [--requests 2000] [--nice 0,5,10]

Each side has its own redis-server and web process (gunicorn gthread, as `python -m bench`) and
runs `python -m bench`'s streaming step (bench/figures.py `streaming`: 2 worker processes x 16
threads against the local streaming fake, 1 s to first token, the batch polled every 20 ms) in
turn, the order alternating each round. "nice N" is this checkout with BATCHLINE_WORKER_NICE=N
(0: the GET path's changes alone); each side's items/s on `simulated/` with zero delays
(CPU-bound, the web idle) and the streaming run's requests/s show what the workers' lower
priority costs their throughput.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from bench import figures
from bench.harness import deployment, load

#: Sides measured: name, the tree it runs (None: this checkout), extra environment.
STREAM_PROCESSES, STREAM_THREADS = 2, 16
TTFT_S = 1.0


def _sides(compare: str | None, nices: list[int]) -> list[tuple[str, str | None, dict[str, str]]]:
    sides: list[tuple[str, str | None, dict[str, str]]] = []
    if compare:
        sides.append(("before", compare, {}))
    sides.extend((f"nice {nice}", None, {"BATCHLINE_WORKER_NICE": str(nice)}) for nice in nices)
    return sides


def run(args: argparse.Namespace, directory: Path) -> dict[str, list[dict[str, Any]]]:
    sides = _sides(args.compare, [int(nice) for nice in args.nice.split(",")])
    results: dict[str, list[dict[str, Any]]] = {name: [] for name, _, _ in sides}
    with ExitStack() as stack:
        deps = {}
        for name, tree, env in sides:
            side_dir = directory / name.replace(" ", "-")
            side_dir.mkdir()
            extra = {**env, **({"PYTHONPATH": tree} if tree else {})}
            deps[name] = stack.enter_context(deployment(side_dir, **extra))
        for round_ in range(args.rounds):
            order = sides if round_ % 2 == 0 else sides[::-1]
            for name, _, env in order:
                figure = {"load": load()}
                figure.update(figures.streaming(deps[name], requests=args.requests, processes=STREAM_PROCESSES,
                                                threads=STREAM_THREADS, ttft_s=TTFT_S))
                if args.simulated:
                    sim = figures.simulated(deps[name], requests=args.simulated, processes=1, threads=8,
                                            message_bytes=False,
                                            worker_nice=int(env.get("BATCHLINE_WORKER_NICE", "0")))
                    figure["simulated_items_per_s"] = sim["items_per_s"]
                results[name].append(figure)
                print(f"  round {round_ + 1} {name:8} (load {figure['load']}): GET p50 "
                      f"{figure['get_batch_p50_ms']:.1f} ms, p99 {figure['get_batch_p99_ms']:.1f} ms "
                      f"({figure['get_batch_calls']} GETs); streaming {figure['requests_per_s']:.0f} req/s, worker "
                      f"{figure['worker_cpu_ms_per_request']:.2f} ms/req"
                      + (f"; simulated {figure['simulated_items_per_s']:.0f} items/s" if args.simulated else ""),
                      flush=True)
    return results


def _summary(results: dict[str, list[dict[str, Any]]]) -> None:
    print("\n| side | GET p50 ms | GET p99 ms | streaming req/s | simulated items/s |\n|---|---|---|---|---|")
    for name, runs in results.items():
        def span(key: str, fmt: str = ".1f", runs: list[dict[str, Any]] = runs) -> str:
            values = [run[key] for run in runs if key in run]
            if not values:
                return "-"
            return f"{statistics.median(values):{fmt}} ({min(values):{fmt}}-{max(values):{fmt}})"
        print(f"| {name} | {span('get_batch_p50_ms')} | {span('get_batch_p99_ms')} | "
              f"{span('requests_per_s', '.0f')} | {span('simulated_items_per_s', '.0f')} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--compare", help="another tree (e.g. an export of main) to measure side by side")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--nice", default="0,10", help="this checkout once per BATCHLINE_WORKER_NICE value given")
    parser.add_argument("--requests", type=int, default=2000, help="requests of the streaming batch")
    parser.add_argument("--simulated", type=int, default=1000,
                        help="requests of the CPU-bound simulated/ batch per side and round (0: skip)")
    parser.add_argument("--json", type=Path, help="also write every figure to this file")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="get-latency-") as tmp:
        results = run(args, Path(tmp))
    _summary(results)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
