"""The worker's per-item budget: CPU, Redis commands, round trips and bytes for one batch item,
with the worker's CPU split into claim, loads, history, prompt, provider call and commit.

    python -m bench.per_item [--items 2000] [--warmup 250] [--threads 16] [--profile]

One real worker process (`dramatiq actors`, 1 process) against a private redis-server, the
`simulated/echo` model with zero delays, every request to one agent (so each item's prompt
carries that agent's latest `history_max_messages` messages, the steady state of a busy agent).
A warm-up batch fills the history and the process's imports first; the measured batch follows.

How each figure is taken (all are deltas over the measured batch, divided by its item count):
- worker CPU: utime + stime of the worker process (all its threads) from /proc/<pid>/stat;
- Redis commands: INFO commandstats (commands run inside Lua scripts count, as in Redis);
- round trips: INFO stats `total_reads_processed`, the read events Redis served: one per
  request or pipeline a client sends (a pipeline that arrives in one read counts once);
- both also given "net of idle": less what the idle worker (heartbeats, Dramatiq's polling,
  the stop listener) costs over the same wall time, measured beforehand, and less this
  script's own status polls;
- bytes: INFO memory `used_memory` before the batch is created and after it ends, and
  `MEMORY USAGE` / `OBJECT ENCODING` of one finished item hash;
- the split: py-spy (`record --gil --format raw`, 250 Hz: only the thread holding the GIL, i.e.
  Python's CPU) on the worker, each sample given to the first category whose function is on its
  stack (`--profile`), then scaled to the measured CPU ms per item.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import redis
from dramatiq.brokers.redis import RedisBroker

from app.schemas.agents import CreateAgent
from app.schemas.batches import LettaBatchRequest
from app.store import Store, connect, keys
from app.tasks import START_BATCH, TaskQueue
from bench.concurrency import start_redis
from tests.support.processes import service_env, worker_process

#: Stack categories for the CPU split, checked in this order: (name, frames that mark it). Since
#: the claim carries the agent, history and small-request reads in its round trip, the first
#: category holds all of them; the next ones what remains of each outside it.
CATEGORIES = [
    ("claim (with agent, history, request reads)", ("RunStore.claim (",
                                                    "ClaimStore.claim_many (", "ClaimBatcher._send (")),
    ("item, agent and request loads", ("RunStore.load_item (", "RunStore.load_request (", "AgentStore.get (",
                                       "ItemStartStore.load_items (", "ItemStartStore.load_chunk (",
                                       "model_validate_json (")),
    ("history", ("app/engine/history.py",)),
    ("prompt", ("to_chat (", "compile_system_prompt (", "input_messages (")),
    ("provider call (the simulated model)", ("stream_with_retries (",)),
    ("commit", ("commit_run (", "CommitStore.commit_many (", "CommitStore.commit_each (")),
    ("chunk bookkeeping", ("WorkerRuntime.run_chunk (",)),
    ("rest of the item path", ("WorkerRuntime.run_item (",)),
    ("rest of the event loop (asyncio, leases, heartbeats)", ("EventLoopThread.run (",)),
]
#: Poll interval of the wait for the batch's end.
POLL_S = 0.05


def cpu_ticks(pid: int) -> int:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of stat)


def worker_child(parent: int) -> int:
    """The dramatiq worker process (the CLI forks one per --processes)."""
    for _ in range(100):
        children = Path(f"/proc/{parent}/task/{parent}/children").read_text().split()
        for child in children:
            if "actors" in Path(f"/proc/{child}/cmdline").read_text():
                return int(child)
        time.sleep(0.1)
    raise RuntimeError("no worker child process found")


def counters(client: redis.Redis) -> dict[str, int]:
    stats = client.info("stats")
    found = {"commands": stats["total_commands_processed"], "reads": stats["total_reads_processed"]}
    for name, value in client.info("commandstats").items():
        found[name.removeprefix("cmdstat_")] = value["calls"]
    return found


def delta(after: dict[str, int], before: dict[str, int]) -> dict[str, int]:
    return {key: after[key] - before.get(key, 0) for key in after if after[key] != before.get(key, 0)}


def run_batch(store: Store, tasks: TaskQueue, agent_id: str, items: int) -> tuple[str, int]:
    """Create a batch, start it, wait for its end: (batch id, status polls made)."""
    requests = [LettaBatchRequest(agent_id=agent_id, input=f"question {i} about the weather") for i in range(items)]
    batch_id, _ = store.batches.create(requests=requests, callback_url=None, metadata=None,
                                       completion_window_s=86_400)
    return batch_id, start_and_wait(store, tasks, batch_id)


def start_and_wait(store: Store, tasks: TaskQueue, batch_id: str) -> int:
    tasks.send(START_BATCH, batch_id)
    polls = 0
    while True:
        polls += 1
        if store.batches.status(batch_id) in ("completed", "cancelled", "expired", "failed"):
            return polls
        time.sleep(POLL_S)


def parse_raw_profile(path: Path, categories: list[tuple[str, tuple[str, ...]]] | None = None, *,
                      rest: str = "other threads (Dramatiq consumer and workers)") -> Counter:
    """Samples of a `py-spy record --format raw` file, each given to the first of `categories`
    (this module's CATEGORIES by default) that one of its markers names on its stack, else to `rest`."""
    split: Counter = Counter()
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        for name, markers in categories or CATEGORIES:
            if any(marker in stack for marker in markers):
                split[name] += int(count)
                break
        else:
            split[rest] += int(count)
    return split


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--items", type=int, default=2000)
    parser.add_argument("--warmup", type=int, default=250)
    parser.add_argument("--threads", type=int, default=16)
    parser.add_argument("--idle-s", type=float, default=3.0, help="idle baseline measured before the batch")
    parser.add_argument("--profile", action="store_true", help="split the worker's CPU with py-spy")
    parser.add_argument("--profile-out", type=Path, help="keep py-spy's raw profile in this file")
    parser.add_argument("--pythonpath", help="run the worker with this PYTHONPATH first (e.g. an older checkout "
                        "of the code, to measure before and after side by side)")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args()
    hz = os.sysconf("SC_CLK_TCK")
    with tempfile.TemporaryDirectory(prefix="per-item-") as tmp:
        directory = Path(tmp)
        redis_process, url = start_redis(directory)
        try:
            figures = measure(args, url, directory, hz)
        finally:
            redis_process.terminate()
            redis_process.wait()
    print(json.dumps(figures, indent=2))
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")


def measure(args: argparse.Namespace, url: str, directory: Path, hz: int) -> dict:
    client = redis.Redis.from_url(url, decode_responses=True)
    store = Store(client=connect(url))
    tasks = TaskQueue(broker=RedisBroker(url=url))
    agent = store.agents.create(CreateAgent.model_validate({
        "model": "simulated/echo", "memory_blocks": [
            {"label": "persona", "value": "I am a helpful assistant who answers briefly."},
            {"label": "human", "value": "The user asks about the weather."}]}))
    env = service_env(url, BATCHLINE_SIMULATED_TTFT_MS="0", BATCHLINE_SIMULATED_TOKEN_MS="0",
                      BATCHLINE_VAR_DIR=str(directory / "var"))
    if args.pythonpath:
        env["PYTHONPATH"] = args.pythonpath
    with worker_process(env, log=directory / "worker.log", threads=args.threads) as process:
        pid = worker_child(process.pid)
        run_batch(store, tasks, agent["id"], args.warmup)
        # The idle worker's own traffic and CPU, per second, to take out of the batch's figures.
        idle_before, idle_ticks, idle_start = counters(client), cpu_ticks(pid), time.monotonic()
        time.sleep(args.idle_s)
        idle_s = time.monotonic() - idle_start
        idle = {key: value / idle_s for key, value in delta(counters(client), idle_before).items()}
        idle_cpu_s = (cpu_ticks(pid) - idle_ticks) / hz / idle_s

        memory_before = client.info("memory")["used_memory"]
        requests = [LettaBatchRequest(agent_id=agent["id"], input=f"question {i} about the weather")
                    for i in range(args.items)]
        batch_id, _ = store.batches.create(requests=requests, callback_url=None, metadata=None,
                                           completion_window_s=86_400)
        profiler = None
        if args.profile:
            profile = args.profile_out or directory / "profile.txt"
            profiler = subprocess.Popen([shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy"),
                                         "record", "--gil", "--pid", str(pid), "--rate", "250", "--format", "raw",
                                         "--output", str(profile)], stdout=subprocess.DEVNULL,
                                        stderr=subprocess.DEVNULL)
            time.sleep(1.0)  # attached
        before, ticks, started = counters(client), cpu_ticks(pid), time.monotonic()
        polls = start_and_wait(store, tasks, batch_id)
        wall_s = time.monotonic() - started
        used = delta(counters(client), before)
        cpu_s = (cpu_ticks(pid) - ticks) / hz
        if profiler is not None:
            profiler.send_signal(signal.SIGINT)
            profiler.wait(timeout=60)
        memory_after = client.info("memory")["used_memory"]
        item_id = store.batches.item_ids(batch_id, start=0, stop=0)[0]
        counts = (store.batches.get(batch_id) or {}).get("request_counts", {})

    n = args.items
    # This script's own polls: one HGET each (one read).
    used["hget"] = used.get("hget", 0) - polls
    used["commands"] -= polls
    used["reads"] -= polls
    net = {key: value - idle.get(key, 0) * wall_s for key, value in used.items()}
    top = sorted(((k, v) for k, v in used.items() if k not in ("commands", "reads")), key=lambda kv: -kv[1])
    figures = {
        "items": n, "threads": args.threads, "request_counts": counts, "wall_s": round(wall_s, 2),
        "items_per_s": round(n / wall_s, 1),
        "worker_cpu_ms_per_item": round(cpu_s * 1000 / n, 3),
        "worker_cpu_ms_per_item_net_of_idle": round((cpu_s - idle_cpu_s * wall_s) * 1000 / n, 3),
        "redis_commands_per_item": round(used["commands"] / n, 2),
        "redis_commands_per_item_net_of_idle": round(net["commands"] / n, 2),
        "round_trips_per_item": round(used["reads"] / n, 2),
        "round_trips_per_item_net_of_idle": round(net["reads"] / n, 2),
        "commands_per_item_by_name": {name: round(value / n, 2) for name, value in top if value / n >= 0.05},
        "redis_bytes_per_item": round((memory_after - memory_before) / n),
        "item_hash_bytes": client.memory_usage(keys.item(item_id)),
        "item_hash_encoding": client.object("encoding", keys.item(item_id)),
    }
    if profiler is not None and profile.exists():
        split = parse_raw_profile(profile)
        total = sum(split.values()) or 1
        figures["cpu_split_percent"] = {name: round(100 * count / total, 1) for name, count in split.most_common()}
        figures["cpu_split_ms_per_item"] = {name: round(figures["worker_cpu_ms_per_item"] * count / total, 3)
                                            for name, count in split.most_common()}
    return figures


if __name__ == "__main__":
    main()
