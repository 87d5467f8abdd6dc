"""What `appendfsync always` costs against `everysec` for Batchline's own writes, and what each
loses when Redis dies right after acknowledging them. Real redis-server (the embedded binary),
AOF on this machine's disk, both settings side by side in one run (rounds alternate).

Cost: `Store.batches.create` of a 100-request batch; `store.runs.commit` of one item (one client,
and 16 threads at once, as a worker's concurrent items commit); a bare SET.
Loss: for 1-2 s (a random length), create small batches and commit items, recording each acknowledgement;
then SIGKILL redis-server. A process crash: restart on the same AOF and count what is missing.
A power loss (simulated): an LD_PRELOAD probe (bench/aof_fsync_probe.c, built with the C
compiler if there is one) records how much of the AOF each completed fsync covered; the AOF cut
there is what a power loss would leave if nothing written since the last fsync reached the disk.

    python -m bench.aof [--rounds 3] [--crashes 5]
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import signal
import statistics
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import redis

from app.embedded_redis import free_port, redis_server_binary
from app.engine.messages import new_message
from app.schemas.agents import CreateAgent
from app.schemas.batches import LettaBatchRequest
from app.store import Store, connect, keys
from app.store.runs import RunRecord
from app.vocabulary import ItemStatus

SETTINGS = ("everysec", "always")
PROBE_SOURCE = Path(__file__).with_name("aof_fsync_probe.c")


class Server:
    """One redis-server with AOF on `appendfsync`, in `directory`."""

    def __init__(self, directory: Path, *, appendfsync: str, probe_so: Path | None = None) -> None:
        self.directory, self.port = directory, free_port()
        directory.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ)
        if probe_so is not None:
            env |= {"LD_PRELOAD": str(probe_so), "AOF_PROBE_FILE": str(self.probe_file)}
        self.process = subprocess.Popen(
            [str(redis_server_binary()), "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(directory),
             "--appendonly", "yes", "--appendfsync", appendfsync, "--save", "",
             "--auto-aof-rewrite-percentage", "0", "--loglevel", "warning", "--logfile", str(directory / "log")],
            env=env, stdout=subprocess.DEVNULL)
        self.store = Store(client=connect(f"redis://127.0.0.1:{self.port}/0"))
        deadline = time.monotonic() + 30
        while True:
            try:
                self.store.ping()
                if self.store.client.info("persistence")["loading"] == 0:
                    return
            except redis.BusyLoadingError:
                pass
            except redis.ConnectionError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"redis-server did not start: {(directory / 'log').read_text()}") from None
            time.sleep(0.02)

    @property
    def probe_file(self) -> Path:
        return self.directory / "fsynced"

    @property
    def aof(self) -> Path:
        return self.directory / "appendonly.aof"

    def fsynced_bytes(self) -> int:
        try:
            return int(self.probe_file.read_text().strip() or 0)
        except FileNotFoundError:
            return 0

    def crash(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=30)


def build_probe(directory: Path) -> Path | None:
    if shutil.which("cc") is None:
        return None
    target = directory / "aof_fsync_probe.so"
    built = subprocess.run(["cc", "-shared", "-fPIC", "-O2", "-o", str(target), str(PROBE_SOURCE), "-ldl"],
                           capture_output=True)
    return target if built.returncode == 0 else None


def _agent(store: Store) -> str:
    return store.agents.create(CreateAgent(model="simulated/echo"))["id"]


def _create(store: Store, agent_id: str, requests: int) -> str:
    batch = [LettaBatchRequest(agent_id=agent_id, input=f"question {i} " + "x" * 200) for i in range(requests)]
    return store.batches.create(requests=batch, callback_url=None, metadata=None, completion_window_s=3600)[0]


def _items(store: Store, agent_id: str, count: int) -> tuple[str, list[str]]:
    batch_id = _create(store, agent_id, count)
    return batch_id, store.batches.item_ids(batch_id, start=0, stop=-1)


def _commit(store: Store, agent_id: str, batch_id: str, item_id: str) -> None:
    """One item's end, as a worker does it: claim (untimed by callers that time `commit`), commit."""
    messages = [new_message(role, [{"type": "text", "text": f"{role} text " + "y" * 300}], agent_id=agent_id,
                            batch_item_id=item_id) for role in ("user", "assistant")]
    record = RunRecord(outcome=ItemStatus.SUCCEEDED, stop_reason="end_turn", messages=messages, ttft_ns=1,
                       total_duration_ns=2)
    assert store.runs.commit(agent_id=agent_id, record=record, batch_id=batch_id, item_id=item_id).committed


def _timed(op: Callable[[], object]) -> float:
    started = time.perf_counter()
    op()
    return time.perf_counter() - started


def cost_round(directory: Path, setting: str, args: argparse.Namespace) -> dict[str, list[float]]:
    server = Server(directory, appendfsync=setting)
    store = server.store
    try:
        agent_id = _agent(store)
        creates = [_timed(lambda: _create(store, agent_id, args.requests)) for _ in range(args.batches)]
        batch_id, item_ids = _items(store, agent_id, args.commits)
        commits = []
        for item_id in item_ids:
            store.runs.claim(batch_id=batch_id, item_id=item_id, owner="bench", lease_s=600)
            commits.append(_timed(lambda i=item_id: _commit(store, agent_id, batch_id, i)))
        batch_id, item_ids = _items(store, agent_id, args.threads * args.commits_per_thread)
        for item_id in item_ids:
            store.runs.claim(batch_id=batch_id, item_id=item_id, owner="bench", lease_s=600)
        shares = [item_ids[n::args.threads] for n in range(args.threads)]
        workers = [threading.Thread(target=lambda share=share: [_commit(store, agent_id, batch_id, i) for i in share])
                   for share in shares]
        started = time.perf_counter()
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        threaded_rate = len(item_ids) / (time.perf_counter() - started)
        value = "v" * 100
        sets = [_timed(lambda n=n: store.client.set(f"bench:{n}", value)) for n in range(args.sets)]
    finally:
        server.stop()
    return {"create": creates, "commit": commits, "threaded": [threaded_rate], "set": sets}


def crash_once(directory: Path, setting: str, args: argparse.Namespace, probe_so: Path | None) -> dict[str, float]:
    """Acknowledged writes for `window_s`, SIGKILL, then count what a restart (process crash) and
    the AOF cut at its last fsync (power loss) have lost."""
    server = Server(directory / "live", appendfsync=setting, probe_so=probe_so)
    store = server.store
    agent_id = _agent(store)
    batch_id, item_ids = _items(store, agent_id, 2000)
    deadline = time.monotonic() + 3  # let the setup reach the disk, so only the window is at stake
    while (probe_so is None or server.fsynced_bytes() < server.aof.stat().st_size) and time.monotonic() < deadline:
        time.sleep(0.05)
    batches, commits, acked_at = [], [], []
    # a random length, so the kill falls anywhere within Redis's once-a-second fsync
    window_s = args.window_s + random.random()
    started = time.monotonic()
    for item_id in item_ids:
        if time.monotonic() - started > window_s:
            break
        batches.append(_create(store, agent_id, 5))
        store.runs.claim(batch_id=batch_id, item_id=item_id, owner="bench", lease_s=600)
        _commit(store, agent_id, batch_id, item_id)
        commits.append(item_id)
        acked_at.append(time.monotonic())
    server.crash()
    killed_at = time.monotonic()
    written, fsynced = server.aof.stat().st_size, server.fsynced_bytes()
    result = {"batches": len(batches), "commits": len(commits), "unsynced_bytes": written - fsynced}
    if probe_so is not None:
        power = directory / "power"
        power.mkdir()
        with open(server.aof, "rb") as source, open(power / "appendonly.aof", "wb") as cut:
            cut.write(source.read(fsynced))
        result |= _lost(Server(power, appendfsync=setting), batches, commits, "power")
    result |= _lost(Server(directory / "live", appendfsync=setting), batches, commits, "process")
    for label in ("power", "process"):
        lost = result.get(f"{label}_lost", [])
        # how old the oldest lost acknowledgement was when Redis died
        result[f"{label}_lost_ms"] = max(((killed_at - acked_at[i]) * 1000 for i in lost), default=0.0)
        result.pop(f"{label}_lost", None)
    return result


def _lost(server: Server, batches: list[str], commits: list[str], label: str) -> dict[str, float]:
    client = server.store.client
    try:
        with client.pipeline(transaction=False) as pipe:
            for batch_id in batches:
                pipe.exists(keys.batch(batch_id))
            for item_id in commits:
                pipe.hget(keys.item(item_id), "status")
            answers = pipe.execute()
    finally:
        server.stop()
    present, statuses = answers[:len(batches)], answers[len(batches):]
    lost = [i for i in range(len(batches)) if not present[i] or statuses[i] != ItemStatus.SUCCEEDED]
    return {f"{label}_lost_batches": present.count(0), f"{label}_lost": lost,
            f"{label}_lost_commits": sum(status != ItemStatus.SUCCEEDED for status in statuses)}


def _ms(values: list[float]) -> float:
    return statistics.median(values) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batches", type=int, default=30, help="batch creates per round")
    parser.add_argument("--requests", type=int, default=100, help="requests per created batch")
    parser.add_argument("--commits", type=int, default=300, help="single-client commits per round")
    parser.add_argument("--threads", type=int, default=16)
    parser.add_argument("--commits-per-thread", type=int, default=40)
    parser.add_argument("--sets", type=int, default=2000)
    parser.add_argument("--crashes", type=int, default=5, help="crashes per setting")
    parser.add_argument("--window-s", type=float, default=1.0,
                        help="acknowledged writes before each crash: this plus a random 0-1 s")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_AOF_DIR")) as tmp:
        root = Path(tmp)
        probe_so = build_probe(root)
        costs: dict[str, dict[str, list[float]]] = {s: {} for s in SETTINGS}
        for n in range(args.rounds):
            for setting in SETTINGS if n % 2 == 0 else reversed(SETTINGS):
                for name, values in cost_round(root / f"cost-{setting}-{n}", setting, args).items():
                    costs[setting].setdefault(name, []).extend(values)
        crashes = {s: [crash_once(root / f"crash-{s}-{n}", s, args, probe_so) for n in range(args.crashes)]
                   for s in SETTINGS}
    print(f"AOF on {Path(tmp).parent} (this machine's disk); {args.rounds} rounds, medians")
    print(f"| workload | {' | '.join(SETTINGS)} | always/everysec |")
    print("|---|---|---|---|")
    rows = [(f"create a {args.requests}-request batch (`Store.batches.create`), ms", "create", _ms),
            ("commit one item (`store.runs.commit`), one client, ms", "commit", _ms),
            (f"item commits per second, {args.threads} threads", "threaded", statistics.median),
            ("bare SET, one client, ms", "set", _ms)]
    for label, name, summary in rows:
        every, always = (summary(costs[s][name]) for s in SETTINGS)
        print(f"| {label} | {every:.2f} | {always:.2f} | {always / every:.2f}x |")
    print()
    print(f"{args.crashes} crashes per setting, each right after {args.window_s:g}-{args.window_s + 1:g} s"
          " of acknowledged writes")
    print(f"| after SIGKILL of redis-server | {' | '.join(SETTINGS)} |")
    print("|---|---|---|")
    total = {s: {key: sum(c[key] for c in crashes[s]) for key in crashes[s][0]} for s in SETTINGS}
    lines = [("acknowledged in the window: batches / item commits", "batches", "commits"),
             ("lost, process crash (restart on the same AOF): batches / commits",
              "process_lost_batches", "process_lost_commits")]
    if probe_so is not None:
        lines.append(("lost, power loss (AOF cut at its last completed fsync): batches / commits",
                      "power_lost_batches", "power_lost_commits"))
    for label, first, second in lines:
        print(f"| {label} | {' | '.join(f'{total[s][first]:.0f} / {total[s][second]:.0f}' for s in SETTINGS)} |")
    for label in ("process", "power") if probe_so is not None else ("process",):
        oldest = " | ".join(f"{max(c[f'{label}_lost_ms'] for c in crashes[s]):.0f}" for s in SETTINGS)
        print(f"| {label}: age of the oldest lost acknowledgement at the kill, worst crash, ms | {oldest} |")
    per_crash = " | ".join(", ".join(f"{c['power_lost_batches']:.0f}" for c in crashes[s]) for s in SETTINGS)
    if probe_so is not None:
        print(f"| power: batches lost in each crash | {per_crash} |")
    if probe_so is None:
        print("power loss not simulated: no C compiler (cc) to build bench/aof_fsync_probe.c")
        return
    unsynced = " | ".join(f"{total[s]['unsynced_bytes'] / args.crashes:.0f}" for s in SETTINGS)
    print(f"| AOF bytes written but not yet fsynced at the kill, mean | {unsynced} |")


if __name__ == "__main__":
    main()
