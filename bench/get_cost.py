"""What one `GET /v1/messages/batches/{id}` costs the web process, in-process (Flask's test client, no
HTTP, nothing else running) on a private redis-server, this checkout against another tree:

    python -m bench.get_cost --compare /tmp/get-before [--gets 2000]

Per side and round: the median and p99 time of a GET after a warm-up (the key known to the
process), and what Redis served per GET (`INFO stats` total_reads_processed: round trips;
`INFO commandstats`: commands, those a Lua script runs included). Each side runs in a fresh
interpreter with the tree first on PYTHONPATH; sides alternate.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def measure(gets: int) -> dict[str, float]:
    """In the side's own interpreter: build the app on a private Redis and time `gets` GETs."""
    import redis

    from app import create_app
    from app.embedded_redis import free_port, redis_server_binary
    from app.settings import Settings

    with tempfile.TemporaryDirectory(prefix="get-cost-") as tmp:
        port = free_port()
        process = subprocess.Popen([str(redis_server_binary()), "--port", str(port), "--bind", "127.0.0.1",
                                    "--save", "", "--appendonly", "no", "--dir", tmp], stdout=subprocess.DEVNULL)
        url = f"redis://127.0.0.1:{port}/0"
        try:
            _wait_for(redis.Redis.from_url(url))
            app = create_app(Settings(redis_url=url, var_dir=Path(tmp) / "var", _env_file=None))
            key = (Path(tmp) / "var" / "api-key").read_text().strip()
            client = app.test_client()
            client.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {key}"
            agent = client.post("/v1/agents/", json={"model": "simulated/echo"}).get_json()["id"]
            batch = client.post("/v1/messages/batches",
                                json={"requests": [{"agent_id": agent, "input": "q"}] * 10}).get_json()["id"]
            path = f"/v1/messages/batches/{batch}"
            for _ in range(100):
                client.get(path)
            server = redis.Redis.from_url(url)
            server.config_resetstat()
            reads = server.info("stats")["total_reads_processed"]
            times = []
            for _ in range(gets):
                started = time.perf_counter()
                answer = client.get(path)
                times.append(time.perf_counter() - started)
                assert answer.status_code == 200
            reads = server.info("stats")["total_reads_processed"] - reads - 1
            commands = sum(stat["calls"] for name, stat in server.info("commandstats").items()
                           if name not in ("cmdstat_info", "cmdstat_config"))
        finally:
            process.terminate()
            process.wait()
    times.sort()
    return {"p50_ms": statistics.median(times) * 1000, "p99_ms": times[math.ceil(len(times) * 0.99) - 1] * 1000,
            "round_trips_per_get": reads / gets, "commands_per_get": commands / gets}


def _wait_for(client: object) -> None:
    deadline = time.monotonic() + 10
    while True:
        try:
            client.ping()  # type: ignore[attr-defined]
            return
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.02)


def _side(tree: str | None, gets: int) -> dict[str, float]:
    """This file run as a script: its directory, not the checkout, is first on the path, so `app`
    comes from PYTHONPATH (the other tree) or from the installed checkout."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("BATCHLINE_")}
    env.pop("PYTHONPATH", None)
    if tree:
        env["PYTHONPATH"] = tree
    with tempfile.TemporaryDirectory() as cwd:  # no .env of the checkout
        run = subprocess.run([sys.executable, __file__, "--measure", str(gets)], env=env, cwd=cwd,
                             capture_output=True, text=True, timeout=600)
    if run.returncode:
        raise RuntimeError(run.stderr[-3000:])
    return json.loads(run.stdout.strip().splitlines()[-1])


def _load() -> str:
    return " ".join(f"{value:.2f}" for value in os.getloadavg())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--compare", help="another tree (e.g. an export of main) to measure side by side")
    parser.add_argument("--gets", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--measure", type=int, help=argparse.SUPPRESS)  # one side, in its own interpreter
    args = parser.parse_args()
    if args.measure:
        print(json.dumps(measure(args.measure)))
        return
    sides = ([("before", args.compare)] if args.compare else []) + [("after", None)]
    for round_ in range(args.rounds):
        for name, tree in sides if round_ % 2 == 0 else sides[::-1]:
            figure = _side(tree, args.gets)
            print(f"round {round_ + 1} {name:6} (load {_load()}): p50 {figure['p50_ms']:.2f} ms, p99 "
                  f"{figure['p99_ms']:.2f} ms, {figure['round_trips_per_get']:.2f} round trips and "
                  f"{figure['commands_per_get']:.1f} Redis commands per GET", flush=True)


if __name__ == "__main__":
    main()
