"""The HTTP client that streams model calls: one aiohttp session per process, opened on first use
inside the event loop that runs the calls.

aiohttp rather than httpx, by measurement on a 2-core machine: at 1,000 concurrent streams
against a local OpenAI-compatible server (`python -m bench.http_clients`), a bare aiohttp client
used 0.36-0.47 ms of CPU per streamed request and a bare httpx client 2.2-2.4 ms, with
keep-alive off as httpx needs it at this concurrency (encode/httpcore#1035); inside the worker,
end to end (`python -m bench.ab_client`), 3.0-3.1 ms against 4.8-5.4 ms. aiohttp's pool gives an
idle connection to one request and has no cap here (no request waits for a connection), so
keep-alive stays on. A connection goes back to the pool only when its response was read to its
end; one left unfinished (a cancelled call, or a stream cut at [DONE] before the body's end) is
closed.
"""

from __future__ import annotations

import codecs
import re
from collections.abc import AsyncIterator
from typing import Any

import aiohttp

_LINE_BREAK = re.compile(r"\r\n|\r|\n")


class StreamClient:
    """What the providers stream through. `connect_timeout_s` bounds connecting; `read_timeout_s`
    is the longest silence inside a stream, not the whole call's duration."""

    def __init__(self, *, connect_timeout_s: float, read_timeout_s: float) -> None:
        self.timeout = aiohttp.ClientTimeout(total=None, connect=connect_timeout_s, sock_read=read_timeout_s)
        self._session: aiohttp.ClientSession | None = None

    def post(self, url: str, *, json: dict[str, Any], headers: dict[str, str]) -> Any:
        """An `async with` response. Redirects are not followed: a redirected POST would carry the
        API key to wherever it points."""
        return self._open().post(url, json=json, headers=headers, allow_redirects=False)

    def _open(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            # No cap on open connections: the worker limits concurrent streams itself
            # (worker_max_streams), and a pool cap here would only queue streams behind each other.
            connector = aiohttp.TCPConnector(limit=0, limit_per_host=0)
            # trust_env: proxy variables apply, as they did with httpx.
            self._session = aiohttp.ClientSession(connector=connector, timeout=self.timeout, trust_env=True)
        return self._session

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def __aenter__(self) -> StreamClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


async def iter_lines(chunks: AsyncIterator[bytes]) -> AsyncIterator[str]:
    """Lines of a UTF-8 body without their terminators (LF, CRLF or a lone CR, as SSE allows),
    whatever their length: aiohttp's own line reader refuses lines beyond 128 KiB, and one SSE
    `data:` line can carry a whole tool call's arguments."""
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    pending = ""
    async for chunk in chunks:
        pending += decoder.decode(chunk)
        # A CR at the end may be the first half of a CRLF split between two chunks.
        cut = len(pending) - 1 if pending.endswith("\r") else len(pending)
        lines = _LINE_BREAK.split(pending[:cut])
        pending = lines.pop() + pending[cut:]
        for line in lines:
            yield line
    pending += decoder.decode(b"", final=True)
    if pending:
        lines = _LINE_BREAK.split(pending)
        for line in lines if lines[-1] else lines[:-1]:
            yield line
