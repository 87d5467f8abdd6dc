"""Scale-out: items/s with 1, 2 and 4 worker processes against one Redis, on `simulated/echo` with
no delays and on the local streaming fake (1 s to first token), and what one Redis can take:
redis-server's own CPU per item, and its commands/s from a pipelined redis-py loop.

    python -m bench.scaling [--processes 1 2 4] [--simulated 3000] [--streamed 3000] [--threads 8]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from multiprocessing import Process, Queue
from pathlib import Path
from typing import Any

import redis

from bench import figures
from bench.harness import deployment, load

#: Commands per pipeline, and pipelines per client, in the commands/s loop.
PIPELINE = 1000
ROUNDS = 50


def _pipelined_client(url: str, key: str, results: Queue) -> None:
    client = redis.Redis.from_url(url)
    started = time.perf_counter()
    for _ in range(ROUNDS):
        with client.pipeline(transaction=False) as pipe:
            for _ in range(PIPELINE):
                pipe.hincrby(key, "n", 1)
            pipe.execute()
    results.put(time.perf_counter() - started)


def redis_commands_per_s(url: str, *, clients: int) -> float:
    """HINCRBY (a typical small write) from `clients` processes, each pipelining `PIPELINE` at a time."""
    results: Queue = Queue()
    workers = [Process(target=_pipelined_client, args=(url, f"bench:ops:{n}", results)) for n in range(clients)]
    started = time.perf_counter()
    for each in workers:
        each.start()
    for each in workers:
        each.join()
    elapsed = time.perf_counter() - started
    return clients * ROUNDS * PIPELINE / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--processes", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--simulated", type=int, default=3000, help="requests per simulated run")
    parser.add_argument("--streamed", type=int, default=3000, help="requests per streamed run")
    parser.add_argument("--out", type=Path, default=None, help="also write the figures here as JSON")
    args = parser.parse_args()
    out: dict[str, Any] = {"load_start": load(), "simulated": {}, "streaming": {}}
    with tempfile.TemporaryDirectory(prefix="batchline-scaling-") as tmp, deployment(Path(tmp)) as dep:
        for n in args.processes:
            out["simulated"][n] = figures.simulated(dep, requests=args.simulated, processes=n, threads=args.threads,
                                                    message_bytes=False) | {"load": load()}
            print(f"simulated, {n} process(es): {out['simulated'][n]['items_per_s']:.0f} items/s "
                  f"(load {out['simulated'][n]['load']})", flush=True)
        for n in args.processes:
            out["streaming"][n] = figures.streaming(dep, requests=args.streamed, processes=n, threads=args.threads,
                                                    ttft_s=1.0) | {"load": load()}
            print(f"streaming, {n} process(es): {out['streaming'][n]['requests_per_s']:.0f} requests/s "
                  f"(load {out['streaming'][n]['load']})", flush=True)
        out["redis_commands_per_s"] = {clients: redis_commands_per_s(dep.redis_url, clients=clients)
                                       for clients in (1, 2)}
    out["load_end"] = load()
    print(f"\nload at start {out['load_start']}, at end {out['load_end']}")
    print("| worker processes | simulated items/s | worker CPU ms/item | redis-server CPU ms/item | Redis cmds/item "
          "| streamed requests/s (1 s TTFT) | wall / ideal | worker CPU ms/request | load |")
    print("|---|---|---|---|---|---|---|---|---|")
    for n in args.processes:
        sim, stream = out["simulated"][n], out["streaming"][n]
        print(f"| {n} | {sim['items_per_s']:.0f} | {sim['worker_cpu_ms_per_item']:.2f} | "
              f"{sim['redis_cpu_ms_per_item']:.3f} | {sim['redis_commands_per_item']:.1f} | "
              f"{stream['requests_per_s']:.0f} | {stream['seconds']:.1f} s / {stream['ideal_s']:.0f} s | "
              f"{stream['worker_cpu_ms_per_request']:.2f} | {sim['load']} / {stream['load']} |")
    for clients, rate in out["redis_commands_per_s"].items():
        print(f"redis-server, pipelined HINCRBY from {clients} client process(es): {rate:,.0f} commands/s")
    if args.out:
        args.out.write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
