"""Real local HTTP servers that speak the OpenAI Chat Completions and Anthropic Messages
streaming wire formats, for tests.

Each fake runs its own asyncio event loop in a background thread on 127.0.0.1 (free port) and
answers HTTP/1.1 with chunked framing and keep-alive. One loop thread rather than a thread per
connection: with hundreds of streams, per-connection threads fight the test's own event loop
for the GIL and slow every stream down by seconds. While a stream waits (first-token or token
delay) a pending read watches the connection, so a client hanging up is noticed at once.
"""

from __future__ import annotations

import asyncio
import json
import re
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any

Script = Callable[[dict, int], "Reply | None"]
_WORDS = re.compile(r"\s*\S+\s*")


@dataclass
class Reply:
    text: str = "Hello from the fake model."
    reasoning: str = ""
    #: (name, arguments JSON text); ids are generated.
    tool_calls: list[tuple[str, str]] = field(default_factory=list)
    #: >= 400: answer with this HTTP error and a JSON error body instead of a stream.
    status: int = 200
    #: Value of the Retry-After header on an error answer.
    retry_after: str | None = None
    error_message: str = "The fake model server refused the request."
    #: None: the server's own defaults.
    first_token_delay_s: float | None = None
    token_delay_s: float | None = None
    #: Send exactly these `data:` payloads (after the first-token delay) and nothing else.
    raw_sse: list[str] | None = None
    #: Send exactly these bytes as the body (after the first-token delay), each piece in its own
    #: write a moment after the last, so that the client reads them apart: SSE lines split anywhere.
    raw_body: list[bytes] | None = None
    #: Send an error event with this message after the first text token, then end the stream.
    stream_error: str | None = None
    #: Close the connection abruptly after this many text tokens.
    drop_after_tokens: int | None = None


def split_words(text: str) -> list[str]:
    return _WORDS.findall(text)


def fragments(text: str, size: int = 7) -> list[str]:
    return [text[i:i + size] for i in range(0, len(text), size)]


class _ClientGone(Exception):
    pass


class _Halt(Exception):
    """Stop streaming: `abrupt` closes the connection without ending the chunked body."""

    def __init__(self, *, abrupt: bool) -> None:
        super().__init__()
        self.abrupt = abrupt


class _Stream:
    """Chunked SSE writer whose waits end early when the client hangs up."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, first_s: float,
                 token_s: float) -> None:
        self._writer = writer
        self._delays = (first_s, token_s)
        self.tokens = 0
        # The client sends nothing while a response streams, so a finished read means EOF.
        self._eof = asyncio.ensure_future(reader.read(1))

    async def release(self) -> None:
        # Cancel-safe (a next request stays buffered), but the read must be over before the
        # connection reads the next request: a StreamReader allows one waiter at a time.
        self._eof.cancel()
        await asyncio.wait({self._eof})
        if not self._eof.cancelled():
            self._eof.exception()  # a reset surfaces here; retrieving it keeps asyncio quiet

    async def send(self, text: str | bytes) -> None:
        if self._eof.done():
            raise _ClientGone
        data = text.encode() if isinstance(text, str) else text
        try:
            self._writer.write(b"%x\r\n%s\r\n" % (len(data), data))
            await self._writer.drain()
        except (ConnectionError, RuntimeError) as exc:
            raise _ClientGone from exc

    async def sse(self, data: Any, event: str | None = None) -> None:
        payload = data if isinstance(data, str) else json.dumps(data)
        await self.send((f"event: {event}\n" if event else "") + f"data: {payload}\n\n")

    async def end(self) -> None:
        # Every event is out: a client that hangs up now (right after [DONE]) read it all.
        if not self._eof.done():
            self._writer.write(b"0\r\n\r\n")

    async def next_token(self) -> None:
        """Wait the first-token delay before the first token, the token delay before others."""
        seconds = self._delays[1] if self.tokens else self._delays[0]
        if seconds > 0:
            await asyncio.wait({self._eof}, timeout=seconds)
        if self._eof.done():
            raise _ClientGone
        self.tokens += 1


class FakeModelServer:
    """What both fakes share; subclasses define the path and the wire format."""

    path = ""

    def __init__(self, *, first_token_delay_s: float = 0.0, token_delay_s: float = 0.0,
                 reply: Reply | None = None, script: Script | None = None) -> None:
        self.first_token_delay_s = first_token_delay_s
        self.token_delay_s = token_delay_s
        self.reply = reply
        self.script = script
        self._cond = threading.Condition()
        self._requests: list[dict] = []
        self._headers: list[dict[str, str]] = []
        self._times: list[float] = []
        self._open = self._max_open = self._closed_by_client = self._completed = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task] = set()

    # --- lifecycle -------------------------------------------------------------------------
    def start(self) -> FakeModelServer:
        self._loop = asyncio.new_event_loop()
        self._server = self._loop.run_until_complete(
            asyncio.start_server(self._connection, "127.0.0.1", 0, backlog=1024))
        self._thread = threading.Thread(target=self._loop.run_forever, name=type(self).__name__, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        loop, self._loop = self._loop, None
        if loop is None:
            return
        asyncio.run_coroutine_threadsafe(self._shutdown(), loop).result(timeout=10)
        loop.call_soon_threadsafe(loop.stop)
        assert self._thread is not None
        self._thread.join(timeout=10)
        loop.close()

    async def _shutdown(self) -> None:
        assert self._server is not None
        self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def __enter__(self) -> FakeModelServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- observations ----------------------------------------------------------------------
    @property
    def port(self) -> int:
        assert self._server is not None, "server not started"
        return self._server.sockets[0].getsockname()[1]

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def requests(self) -> list[dict]:
        with self._cond:
            return list(self._requests)

    @property
    def request_times(self) -> list[float]:
        """When each request of `requests` arrived (`time.monotonic()` of the test's process)."""
        with self._cond:
            return list(self._times)

    @property
    def headers(self) -> list[dict[str, str]]:
        """Request headers (lower-case names), in the order of `requests`."""
        with self._cond:
            return list(self._headers)

    @property
    def open_streams(self) -> int:
        with self._cond:
            return self._open

    @property
    def max_open_streams(self) -> int:
        with self._cond:
            return self._max_open

    @property
    def streams_closed_by_client(self) -> int:
        with self._cond:
            return self._closed_by_client

    @property
    def completed_streams(self) -> int:
        with self._cond:
            return self._completed

    def wait_for_open_streams(self, n: int, timeout_s: float) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: self._open >= n, timeout=timeout_s)

    def wait_until_idle(self, timeout_s: float) -> bool:
        """Wait until no stream is open: a client can finish reading (at [DONE]) a moment
        before the server has counted the stream as completed."""
        with self._cond:
            return self._cond.wait_for(lambda: self._open == 0, timeout=timeout_s)

    # --- HTTP ------------------------------------------------------------------------------
    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            while await self._exchange(reader, writer):
                pass
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
            pass
        except asyncio.CancelledError:
            # stop() cancels us; ending normally keeps 3.11's start_server callback from
            # logging every cancelled connection as an error.
            pass
        finally:
            self._tasks.discard(task)
            writer.close()

    async def _exchange(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        """Answer one request; False when the connection must close."""
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError:
            return False  # the client closed an idle keep-alive connection
        request_line, *lines = head.decode("latin-1").split("\r\n")
        method, target, *_ = [*request_line.split(" "), "", ""]
        headers = {k.strip().lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines if ln)}
        raw = await reader.readexactly(int(headers.get("content-length") or 0))
        if method != "POST" or target.split("?")[0] != self.path:
            return self._send_json(writer, 404, {"error": {"message": f"no route {method} {target}"}})
        try:
            body = json.loads(raw)
        except ValueError:
            return self._send_json(writer, 400, {"error": {"message": "body is not JSON"}})
        with self._cond:
            n = len(self._requests)
            self._requests.append(body)
            self._headers.append(headers)
            self._times.append(time.monotonic())
        script = self.script
        try:
            reply = (script(body, n) if script is not None else None) or self.reply or Reply()
        except Exception as exc:  # a broken script must fail the test visibly, not hang it
            return self._send_json(writer, 500, {"error": {"message": f"fake server script failed: {exc!r}"}})
        if reply.status >= 400:
            extra = {"Retry-After": reply.retry_after} if reply.retry_after is not None else {}
            return self._send_json(writer, reply.status, self.error_body(reply), extra)
        writer.write(_head(200, {"Content-Type": "text/event-stream", "Cache-Control": "no-cache",
                                 "Transfer-Encoding": "chunked"}))
        return await self._run_stream(reader, writer, reply, body, n)

    async def _run_stream(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, reply: Reply,
                          body: dict, n: int) -> bool:
        first = self.first_token_delay_s if reply.first_token_delay_s is None else reply.first_token_delay_s
        token = self.token_delay_s if reply.token_delay_s is None else reply.token_delay_s
        stream = _Stream(reader, writer, first, token)
        self._count(opened=True)
        outcome = "completed"
        try:
            try:
                await self.write_stream(stream, reply, body, n)
            except _Halt as halt:
                if halt.abrupt:
                    raise
            await stream.end()
            return True
        except _ClientGone:
            outcome = "client"
            return False
        except _Halt:
            outcome = "dropped"
            return False
        except asyncio.CancelledError:
            outcome = "stopped"
            raise
        finally:
            await stream.release()
            self._count(closed=outcome)

    def _count(self, *, opened: bool = False, closed: str | None = None) -> None:
        with self._cond:
            if opened:
                self._open += 1
                self._max_open = max(self._max_open, self._open)
            if closed is not None:
                self._open -= 1
                self._closed_by_client += closed == "client"
                self._completed += closed == "completed"
            self._cond.notify_all()

    @staticmethod
    def _send_json(writer: asyncio.StreamWriter, status: int, payload: dict,
                   extra: dict[str, str] | None = None) -> bool:
        data = json.dumps(payload).encode()
        writer.write(_head(status, {"Content-Type": "application/json", "Content-Length": str(len(data)),
                                    **(extra or {})}) + data)
        return True

    # --- wire format (subclasses) ----------------------------------------------------------
    def error_body(self, reply: Reply) -> dict:
        raise NotImplementedError

    async def write_stream(self, stream: _Stream, reply: Reply, body: dict, n: int) -> None:
        raise NotImplementedError


def _head(status: int, headers: dict[str, str]) -> bytes:
    try:
        phrase = HTTPStatus(status).phrase
    except ValueError:
        phrase = "Error"  # e.g. Anthropic's 529
    lines = [f"HTTP/1.1 {status} {phrase}", *(f"{k}: {v}" for k, v in headers.items())]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


async def _send_raw(stream: _Stream, payloads: list[str]) -> None:
    await stream.next_token()
    for payload in payloads:
        await stream.send(f"data: {payload}\n\n")


async def _send_pieces(stream: _Stream, pieces: list[bytes]) -> None:
    await stream.next_token()
    for piece in pieces:
        await stream.send(piece)
        await asyncio.sleep(0.01)


async def _send_text(stream: _Stream, reply: Reply, send_word: Callable[[str], Awaitable[None]],
                     send_error: Callable[[], Awaitable[None]]) -> None:
    """Stream the text word by word, honouring drop_after_tokens and stream_error."""
    words = split_words(reply.text)
    for count in range(len(words) + 1):
        if reply.drop_after_tokens is not None and count >= reply.drop_after_tokens:
            raise _Halt(abrupt=True)
        if reply.stream_error is not None and (count >= 1 or not words):
            if not words:
                await stream.next_token()
            await send_error()
            raise _Halt(abrupt=False)
        if count < len(words):
            await stream.next_token()
            await send_word(words[count])


def _prompt_tokens(body: dict) -> int:
    return len(json.dumps(body.get("messages", []))) // 4 + 1


class FakeOpenAIServer(FakeModelServer):
    path = "/v1/chat/completions"

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def error_body(self, reply: Reply) -> dict:
        kind = {400: "invalid_request_error", 401: "invalid_request_error", 429: "rate_limit_exceeded"}
        return {"error": {"message": reply.error_message, "type": kind.get(reply.status, "server_error"),
                          "param": None, "code": None}}

    async def write_stream(self, stream: _Stream, reply: Reply, body: dict, n: int) -> None:
        if reply.raw_body is not None:
            return await _send_pieces(stream, reply.raw_body)
        if reply.raw_sse is not None:
            return await _send_raw(stream, reply.raw_sse)
        base = {"id": f"chatcmpl-fake-{n}", "object": "chat.completion.chunk", "created": int(time.time()),
                "model": body.get("model", "")}

        async def chunk(delta: dict, finish: str | None = None) -> None:
            choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
            await stream.sse(base | {"choices": [choice]})

        async def error() -> None:
            await stream.sse({"error": {"message": reply.stream_error, "type": "server_error"}})

        await stream.send(": keep-alive\n\n")
        await chunk({"role": "assistant", "content": ""})
        for word in split_words(reply.reasoning):
            await stream.next_token()
            await chunk({"reasoning_content": word})
        await _send_text(stream, reply, lambda word: chunk({"content": word}), error)
        for i, (name, arguments) in enumerate(reply.tool_calls):
            await stream.next_token()
            await chunk({"tool_calls": [{"index": i, "id": f"call_fake_{n}_{i}", "type": "function",
                                         "function": {"name": name, "arguments": ""}}]})
            for piece in fragments(arguments):
                await stream.next_token()
                await chunk({"tool_calls": [{"index": i, "function": {"arguments": piece}}]})
        await chunk({}, "tool_calls" if reply.tool_calls else "stop")
        if (body.get("stream_options") or {}).get("include_usage"):
            usage = {"prompt_tokens": _prompt_tokens(body), "completion_tokens": stream.tokens}
            await stream.sse(base | {"choices": [], "usage": usage | {"total_tokens": sum(usage.values())}})
        await stream.sse("[DONE]")


class FakeAnthropicServer(FakeModelServer):
    path = "/v1/messages"

    def error_body(self, reply: Reply) -> dict:
        kind = {400: "invalid_request_error", 401: "authentication_error", 429: "rate_limit_error",
                529: "overloaded_error"}
        return {"type": "error", "error": {"type": kind.get(reply.status, "api_error"),
                                           "message": reply.error_message}}

    async def write_stream(self, stream: _Stream, reply: Reply, body: dict, n: int) -> None:
        if reply.raw_body is not None:
            return await _send_pieces(stream, reply.raw_body)
        if reply.raw_sse is not None:
            return await _send_raw(stream, reply.raw_sse)

        async def event(name: str, data: dict) -> None:
            await stream.sse({"type": name} | data, event=name)

        async def block(index: int, start: dict, deltas: list[dict], unpaced: tuple[dict, ...] = ()) -> None:
            await event("content_block_start", {"index": index, "content_block": start})
            for delta in deltas:
                await stream.next_token()
                await event("content_block_delta", {"index": index, "delta": delta})
            for delta in unpaced:
                await event("content_block_delta", {"index": index, "delta": delta})
            await event("content_block_stop", {"index": index})

        async def text(word: str) -> None:
            await event("content_block_delta", {"index": index, "delta": {"type": "text_delta", "text": word}})

        async def error() -> None:
            await event("error", {"error": {"type": "overloaded_error", "message": reply.stream_error}})

        await event("message_start", {"message": {
            "id": f"msg_fake_{n}", "type": "message", "role": "assistant", "content": [],
            "model": body.get("model", ""), "stop_reason": None, "stop_sequence": None,
            "usage": {"input_tokens": _prompt_tokens(body), "output_tokens": 1}}})
        await event("ping", {})
        index = 0
        if reply.reasoning:
            await block(index, {"type": "thinking", "thinking": ""},
                        [{"type": "thinking_delta", "thinking": w} for w in split_words(reply.reasoning)],
                        ({"type": "signature_delta", "signature": f"sig-fake-{n}"},))
            index += 1
        if reply.text or reply.stream_error is not None or reply.drop_after_tokens is not None:
            await event("content_block_start", {"index": index, "content_block": {"type": "text", "text": ""}})
            await _send_text(stream, reply, text, error)
            await event("content_block_stop", {"index": index})
            index += 1
        for i, (name, arguments) in enumerate(reply.tool_calls):
            await block(index + i, {"type": "tool_use", "id": f"toolu_fake_{n}_{i}", "name": name, "input": {}},
                        [{"type": "input_json_delta", "partial_json": p} for p in fragments(arguments)])
        stop_reason = "tool_use" if reply.tool_calls else "end_turn"
        await event("message_delta", {"delta": {"stop_reason": stop_reason, "stop_sequence": None},
                                      "usage": {"output_tokens": stream.tokens}})
        await event("message_stop", {})
