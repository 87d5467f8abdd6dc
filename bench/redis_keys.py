"""Where Redis memory goes per batch item: a `simulated/echo` batch run to its end on a private
redis-server, then every key grouped by its pattern (ids replaced), with `MEMORY USAGE` per item.

    python -m bench.redis_keys [--requests 2000]

The `used_memory` growth the run caused is printed too: it is what `python -m bench` reports
(allocator rounding and the main dictionary's entries make it larger than the keys' sum).
"""

from __future__ import annotations

import argparse
import re
import tempfile
from collections import Counter
from pathlib import Path

from bench import figures
from bench.harness import deployment

#: Ids in key names, replaced so that keys of one kind group together.
_ID = re.compile(r"(agent|job|batch_item|message)-[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_NUMBER = re.compile(r":\d+")


def pattern(key: str) -> str:
    return _NUMBER.sub(":<n>", _ID.sub(lambda match: f"{match.group(1)}-<id>", key))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=2000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="batchline-bench-") as tmp, deployment(Path(tmp)) as dep:
        run = figures.simulated(dep, requests=args.requests, processes=1, threads=8)
        client = dep.redis
        sizes: Counter = Counter()
        counts: Counter = Counter()
        for key in client.scan_iter(count=1000):
            name = pattern(key.decode())
            sizes[name] += client.memory_usage(key, samples=0) or 0
            counts[name] += 1
    per_item = args.requests
    print(f"used_memory growth per item: {run['redis_bytes_per_item']:.0f} B, of which the messages "
          f"(bl:msg:*) {run['message_bytes_per_item']:.0f} B")
    print("| key | keys | bytes per item |\n|---|---|---|")
    for name, size in sizes.most_common():
        if size / per_item >= 1:
            print(f"| `{name}` | {counts[name]} | {size / per_item:.0f} |")


if __name__ == "__main__":
    main()
