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

import contextlib
from typing import Any

import aiohttp
from aiohttp.helpers import get_env_proxy_for_url
from yarl import URL

#: Origins whose proxy decision a client keeps; endpoints are user input, so the memo is bounded.
PROXY_MEMO_MAX = 1024


class StreamClient:
    """What the providers stream through. `connect_timeout_s` bounds connecting; `read_timeout_s`
    is the longest silence inside a stream, not the whole call's duration."""

    def __init__(self, *, connect_timeout_s: float, read_timeout_s: float) -> None:
        self.timeout = aiohttp.ClientTimeout(total=None, connect=connect_timeout_s, sock_read=read_timeout_s)
        self._session: aiohttp.ClientSession | None = None
        self._proxies: dict[tuple[str, str | None], tuple[URL | None, aiohttp.BasicAuth | None]] = {}

    def post(self, url: str, *, body: bytes, headers: dict[str, str]) -> Any:
        """An `async with` response to a POST of `body` (JSON). Redirects are not followed: a
        redirected POST would carry the API key to wherever it points."""
        try:
            target = URL(url)
        except (TypeError, ValueError) as exc:
            raise aiohttp.InvalidURL(url) from exc
        proxy, proxy_auth = self._proxy_for(target)
        return self._open().post(target, data=body, headers={**headers, "Content-Type": "application/json"},
                                 allow_redirects=False, proxy=proxy, proxy_auth=proxy_auth)

    def _proxy_for(self, target: URL) -> tuple[URL | None, aiohttp.BasicAuth | None]:
        """The proxy the environment names for `target` (HTTP_PROXY, HTTPS_PROXY, NO_PROXY, as
        httpx and aiohttp's trust_env read them), decided once per origin: aiohttp's trust_env
        asks again on every request, in two thread-pool hops (the proxy and a ~/.netrc lookup),
        which cost more CPU than the rest of the request's setup. The environment does not change
        under a running process. No .netrc credentials are sent: the provider's key is the only
        credential a model call carries."""
        key = (target.scheme, target.host)
        found = self._proxies.get(key)
        if found is None:
            found = (None, None)
            if target.scheme in ("http", "https"):
                with contextlib.suppress(LookupError):
                    found = get_env_proxy_for_url(target)
            if len(self._proxies) >= PROXY_MEMO_MAX:
                self._proxies.clear()
            self._proxies[key] = found
        return found

    def _open(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            # No cap on open connections: the worker limits concurrent streams itself
            # (worker_max_streams), and a pool cap here would only queue streams behind each other.
            connector = aiohttp.TCPConnector(limit=0, limit_per_host=0)
            # trust_env off: the proxy variables are read by _proxy_for instead.
            self._session = aiohttp.ClientSession(connector=connector, timeout=self.timeout, trust_env=False)
        return self._session

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def __aenter__(self) -> StreamClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()
