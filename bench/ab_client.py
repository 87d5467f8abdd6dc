"""Batchline's worker CPU per streamed request on two source trees side by side, on one Redis,
one web process and one local streaming fake: this checkout against another copy of `app` and
`actors` (say, the commit before a change to the streaming client), alternating, `--rounds` each.

    python -m bench.ab_client OTHER_TREE [--requests 2000] [--rounds 2]

OTHER_TREE holds `app/` and `actors/`; its workers run with it first on PYTHONPATH.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from bench import figures
from bench.harness import deployment, load


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("other", type=Path)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--threads", type=int, default=16)
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(prefix="batchline-ab-") as tmp, deployment(Path(tmp)) as dep:
        base_env = dict(dep.env)
        for round_ in range(args.rounds):
            for name, extra in (("this checkout", {}), (str(args.other), {"PYTHONPATH": str(args.other.resolve())})):
                dep.env = {**base_env, **extra}
                r = figures.streaming(dep, requests=args.requests, processes=args.processes, threads=args.threads,
                                      ttft_s=1.0)
                rows.append((round_ + 1, name, r, load()))
                print(f"round {round_ + 1}, {name}: {r['worker_cpu_ms_per_request']:.2f} ms CPU/request, "
                      f"wall {r['seconds']:.1f} s (load {rows[-1][3]})", flush=True)
    print("| round | tree | worker CPU ms/request | wall s | GET p99 ms | load |\n|---|---|---|---|---|---|")
    for round_, name, r, at in rows:
        print(f"| {round_} | {name} | {r['worker_cpu_ms_per_request']:.2f} | {r['seconds']:.1f} | "
              f"{r['get_batch_p99_ms']:.1f} | {at} |")


if __name__ == "__main__":
    main()
