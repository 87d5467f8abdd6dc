"""CPU per streamed request of the HTTP clients a worker could stream with, at about 1,000
concurrent streams against the local OpenAI-compatible fake (its own process, 1 s to first
token). Each contender runs in a fresh process that measures only its own streaming CPU.

    python -m bench.http_clients [--requests 2000] [--concurrency 1000] [--ttft-s 1.0] [--history 200]

Contenders: a bare httpx.AsyncClient configured as Batchline's was before it moved to aiohttp,
a bare aiohttp.ClientSession, and Batchline's own OpenAI provider (SSE parsing and accumulation
included) on the client `make_http_client` gives it (aiohttp).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.harness import FakeModelProcess, load

CONTENDERS = ("httpx", "aiohttp", "batchline-provider")
_BODY = {"model": "m", "stream": True, "messages": [{"role": "user", "content": "hi"}]}


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def _bare_httpx(url: str, requests: int, concurrency: int) -> None:
    import httpx

    # As Batchline configured httpx before aiohttp: no pool cap, and no idle keep-alive
    # connections (at this concurrency httpcore 1.x hands one idle connection to every queued
    # request and lets the losers retry, encode/httpcore#1035).
    gate = asyncio.Semaphore(concurrency)
    limits = httpx.Limits(max_connections=None, max_keepalive_connections=0)
    async with httpx.AsyncClient(timeout=httpx.Timeout(10.0, read=300.0), limits=limits) as client:

        async def one() -> None:
            async with gate, client.stream("POST", f"{url}/chat/completions", json=_BODY) as response:
                async for _ in response.aiter_lines():
                    pass

        await asyncio.gather(*(one() for _ in range(requests)))


async def _bare_aiohttp(url: str, requests: int, concurrency: int) -> None:
    import aiohttp

    gate = asyncio.Semaphore(concurrency)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:

        async def one() -> None:
            async with gate, session.post(f"{url}/chat/completions", json=_BODY) as response:
                async for _ in response.content:
                    pass

        await asyncio.gather(*(one() for _ in range(requests)))


async def _provider(url: str, requests: int, concurrency: int, history: int = 0) -> None:
    from app.providers import ProviderRegistry, make_http_client
    from app.providers.base import ChatMessage, ModelRequest
    from app.settings import Settings

    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    gate = asyncio.Semaphore(concurrency)
    async with make_http_client(settings) as client:
        provider = ProviderRegistry(settings=settings, client=client).get("openai")
        # A history of `history` earlier turns, the same objects every call, as a worker's TurnCache gives them.
        turns = tuple(ChatMessage(role="assistant" if i % 2 else "user", text=f"question {i} about the weather")
                      for i in range(history))
        request = ModelRequest(model="m", system="", endpoint=url,
                               messages=(*turns, ChatMessage(role="user", text="hi")))

        async def one() -> None:
            async with gate:
                await provider.stream(request, on_first_token=lambda: None)

        await asyncio.gather(*(one() for _ in range(requests)))


def _child(kind: str, url: str, requests: int, concurrency: int, history: int) -> None:
    run = {"httpx": _bare_httpx, "aiohttp": _bare_aiohttp, "batchline-provider": _provider}[kind]
    before, started = _cpu(), time.monotonic()
    asyncio.run(run(url, requests, concurrency, history) if kind == "batchline-provider" else
                run(url, requests, concurrency))
    print(json.dumps({"cpu_s": _cpu() - before, "wall_s": time.monotonic() - started}))


def measure(*, requests: int, concurrency: int, ttft_s: float, directory: Path,
            contenders: tuple[str, ...] = CONTENDERS, history: int = 0) -> dict[str, dict[str, Any]]:
    results = {}
    for kind in contenders:
        with FakeModelProcess(first_token_delay_s=ttft_s, directory=directory) as model:
            server_before = model.cpu_s()
            out = subprocess.run([sys.executable, "-m", "bench.http_clients", "--child", kind, model.base_url,
                                  "--requests", str(requests), "--concurrency", str(concurrency),
                                  "--history", str(history)],
                                 capture_output=True, text=True, check=True, timeout=600)
            server_cpu = model.cpu_s() - server_before
        figures = json.loads(out.stdout.strip().splitlines()[-1])
        results[kind] = {"cpu_ms_per_request": figures["cpu_s"] * 1000 / requests, "wall_s": figures["wall_s"],
                         "model_server_cpu_ms_per_request": server_cpu * 1000 / requests,
                         "max_open_streams": model.stats.get("max_open_streams")}
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=1000)
    parser.add_argument("--ttft-s", type=float, default=1.0)
    parser.add_argument("--history", type=int, default=0,
                        help="turns of earlier history in the provider's requests (the bare clients send one turn)")
    parser.add_argument("--child", nargs=2, metavar=("KIND", "URL"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return _child(args.child[0], args.child[1], args.requests, args.concurrency, args.history)
    print(f"{args.requests} streamed requests, {args.concurrency} at once, first token after {args.ttft_s:g} s; "
          f"load {load()}")
    with tempfile.TemporaryDirectory() as tmp:
        results = measure(requests=args.requests, concurrency=args.concurrency, ttft_s=args.ttft_s,
                          directory=Path(tmp), history=args.history)
    print(f"{'client':20} {'CPU ms/request':>15} {'wall s':>8} {'max open':>9} {'fake server CPU ms/req':>23}")
    for kind, r in results.items():
        print(f"{kind:20} {r['cpu_ms_per_request']:15.2f} {r['wall_s']:8.2f} {r['max_open_streams']!s:>9} "
              f"{r['model_server_cpu_ms_per_request']:23.2f}")
    print(f"load after: {load()}")


if __name__ == "__main__":
    main()
