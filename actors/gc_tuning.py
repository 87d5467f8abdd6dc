"""The worker process's garbage collector.

Streaming allocates hundreds of short-lived container objects per model call (aiohttp's request
and response, futures and handles, parsed chunks), nearly all freed by reference counting. With
CPython's default first threshold (700), young collections run every few calls, and each
promotion pass walks a heap that holds the process's imports and its agents' histories: at
1,600 concurrent streams that was about a fifth of the worker's CPU per streamed request
(`python -m bench.stream_cpu`, docs/performance.md). Only cyclic garbage waits longer for
collection; the generations above keep their default ratios.
"""

from __future__ import annotations

import gc

#: Net allocations of container objects between two young collections (CPython's default: 700).
YOUNG_COLLECTION_THRESHOLD = 50_000


def tune_for_worker() -> None:
    """Called once per worker process after its imports: what exists now (modules, classes,
    schemas) is never garbage, so it is frozen out of every later collection's walk."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(YOUNG_COLLECTION_THRESHOLD, *gc.get_threshold()[1:])
