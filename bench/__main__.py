"""Every figure of issue 10's table in one run, side by side on the same redis-server, each printed
with its goal; written to bench/results.json. Starts its own redis-server, web and worker
processes on free ports, and a local OpenAI-compatible streaming fake in a process of its own.

    python -m bench [--quick] [--out bench/results.json]

The default sizes finish in about 3-5 minutes on a 2-core machine (under 10 on a busy one).
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import figures
from bench.harness import deployment, load
from bench.http_clients import measure as measure_clients

#: Sizes of each figure: the full run, and --quick (a smoke run of the command itself).
SIZES = {
    "full": {"ceiling_messages": 10_000, "simulated_requests": 5_000, "stream_requests": 2_000,
             "post_requests": 100_000, "post_repeat": 2, "client_requests": 2_000},
    "quick": {"ceiling_messages": 1_000, "simulated_requests": 300, "stream_requests": 200,
              "post_requests": 5_000, "post_repeat": 1, "client_requests": 200},
}
#: Worker shapes: the ratio compares like with like (1 process x 8 threads on both sides); the
#: streaming run uses the Procfile's defaults (2 processes x 16 threads).
CEILING_THREADS = 8
STREAM_PROCESSES, STREAM_THREADS = 2, 16
TTFT_S = 1.0
CANCELS = 10


def run(size: str, directory: Path) -> dict[str, Any]:
    sizes = SIZES[size]
    out: dict[str, Any] = {"started_at": datetime.now(UTC).isoformat(timespec="seconds"), "size": size,
                           "machine": f"{platform.node()}: {_cores()} cores, {platform.python_implementation()} "
                                      f"{platform.python_version()}", "load": {}}

    def step(name: str, measure: Any) -> None:
        out["load"][name] = load()
        print(f"  {name} (load {out['load'][name]}) ...", flush=True)
        started = time.monotonic()
        out[name] = measure()
        print(f"    {time.monotonic() - started:.0f} s", flush=True)

    with deployment(directory) as dep:
        step("raw_ceiling", lambda: figures.raw_ceiling(dep, messages=sizes["ceiling_messages"],
                                                        threads=CEILING_THREADS))
        step("simulated", lambda: figures.simulated(dep, requests=sizes["simulated_requests"], processes=1,
                                                    threads=CEILING_THREADS))
        step("streaming", lambda: figures.streaming(dep, requests=sizes["stream_requests"],
                                                    processes=STREAM_PROCESSES, threads=STREAM_THREADS,
                                                    ttft_s=TTFT_S))
        step("http_clients", lambda: measure_clients(requests=sizes["client_requests"],
                                                     concurrency=min(1000, sizes["client_requests"]),
                                                     ttft_s=TTFT_S, directory=directory,
                                                     contenders=("aiohttp",)))
        step("cancel", lambda: figures.cancel_latency(dep, times=CANCELS))
        # Last: it leaves 100k queued requests behind, and no worker may run them.
        step("post", lambda: figures.post_batch(dep, requests=sizes["post_requests"], repeat=sizes["post_repeat"]))
    out["load"]["end"] = load()
    return out


def _cores() -> int:
    import os

    return os.cpu_count() or 0


def rows(r: dict[str, Any]) -> list[tuple[str, str, str]]:
    sim, stream, post, cancel = r["simulated"], r["streaming"], r["post"], r["cancel"]
    ceiling = r["raw_ceiling"]["messages_per_s"]
    bare = r["http_clients"]["aiohttp"]["cpu_ms_per_request"]
    seconds, growth = post["seconds"], post["rss_growth_vs_body"]
    return [
        (f"worker CPU per request, local streaming fake ({stream['requests']} requests, {TTFT_S:g} s to first "
         f"token, {stream['processes']} x {stream['threads']})",
         f"{stream['worker_cpu_ms_per_request']:.2f} ms (bare aiohttp client: {bare:.2f} ms); wall "
         f"{stream['seconds']:.1f} s vs ideal {stream['ideal_s']:.1f} s ({stream['wall_vs_ideal']:.1f}x), "
         f"{stream['max_open_streams']} streams open",
         "<= 1.0 ms; wall <= 1.5x ideal once the model server has its own cores"),
        (f"items/s, simulated/ zero delays ({sim['requests']} requests, 1 x {sim['threads']}) / raw no-op "
         f"Dramatiq actor (1 x {CEILING_THREADS})",
         f"{sim['items_per_s']:.0f} / {ceiling:.0f} = {sim['items_per_s'] / ceiling:.2f}", ">= 1.0"),
        ("worker CPU per item, simulated/", f"{sim['worker_cpu_ms_per_item']:.2f} ms", "(no goal of its own)"),
        ("Redis commands per item (Lua-internal included; scripts run)",
         f"{sim['redis_commands_per_item']:.1f} ({sim['redis_scripts_per_item']:.1f} scripts)", "<= 12"),
        ("Redis memory per item",
         f"{sim['redis_bytes_per_item'] / 1000:.2f} KB, of which messages "
         f"{sim['message_bytes_per_item'] / 1000:.2f} KB",
         "<= 1.5 KB plus the messages"),
        (f"POST of a {post['requests']:,}-request batch ({post['body_mb']:.1f} MB body)",
         f"{_range(seconds, 's')}; web peak growth {_range(growth, 'x')} the body", "<= 1.0 s, <= 4x the body"),
        (f"GET batch p99 while {stream['requests']} requests stream",
         f"{stream['get_batch_p99_ms']:.1f} ms (p50 {stream['get_batch_p50_ms']:.1f}, "
         f"{stream['get_batch_calls']} GETs)",
         "<= 10 ms"),
        (f"cancel -> cancelled, no stream open, worst of {cancel['times']}", f"{cancel['worst_ms']:.0f} ms",
         "<= 100 ms"),
    ]


def _range(values: list[float], unit: str) -> str:
    low, high = min(values), max(values)
    return f"{low:.2f} {unit}" if high - low < 0.005 else f"{low:.2f}-{high:.2f} {unit}"


def print_table(r: dict[str, Any]) -> None:
    print(f"\n{r['machine']}; started {r['started_at']}; load (1/5/15 min) at each step: {r['load']}")
    table = rows(r)
    print("| figure | measured | goal |\n|---|---|---|")
    for figure, measured, goal in table:
        print(f"| {figure} | {measured} | {goal} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes: check the command works (~1 min)")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results.json")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="batchline-bench-") as tmp:
        results = run("quick" if args.quick else "full", Path(tmp))
    results["table"] = [{"figure": f, "measured": m, "goal": g} for f, m, g in rows(results)]
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print_table(results)
    print(f"\nwritten to {args.out}")


if __name__ == "__main__":
    main()
