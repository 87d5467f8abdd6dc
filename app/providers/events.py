"""Server-Sent Events parsed from a streaming body's raw bytes, in whatever pieces the network
delivers them.

Bytes rather than text, and one call per network read rather than an async iterator per line:
a streamed call is some ten events, and at a thousand concurrent streams the per-line decoding
and iterator hops cost more CPU than the HTTP client itself (`python -m bench.stream_cpu`). A
`data:` payload stays bytes until the provider's one `json.loads`.
"""

from __future__ import annotations

from typing import Protocol

#: One event: its type ("message" when the server named none) and its data, the `data:` lines
#: joined by a newline, as the SSE spec says.
Event = tuple[str, bytes]


class SSEParser:
    """`feed` each piece of the body as it arrives and `end` once at its end; each returns the
    events that piece completed.

    Lines may end in LF, CRLF or a lone CR (a CRLF may be split between two pieces), and may be of
    any length: aiohttp's own line reader refuses lines beyond 128 KiB, and one `data:` line can
    carry a whole tool call's arguments. Comments (keep-alives) and the `id` and `retry` fields
    are skipped: neither provider resumes a stream. A pending event is still dispatched at the
    end of a body without its final blank line: some OpenAI-compatible servers omit it after
    `data: [DONE]`, and the spec's "discard it" would turn their last event into a bogus
    truncated-stream error.
    """

    __slots__ = ("_after_cr", "_data", "_event", "_pending")

    def __init__(self) -> None:
        #: The start of a line whose end has not arrived yet.
        self._pending: list[bytes] = []
        #: The `data:` lines of the event being read.
        self._data: list[bytes] = []
        self._event = ""
        #: The last piece ended in CR: an LF opening the next piece is the rest of a CRLF.
        self._after_cr = False

    def feed(self, piece: bytes) -> list[Event]:
        if self._after_cr:
            self._after_cr = False
            if piece[:1] == b"\n":
                piece = piece[1:]
        if b"\r" in piece:
            self._after_cr = piece[-1:] == b"\r"
            piece = piece.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        if b"\n" not in piece:
            if piece:
                self._pending.append(piece)
            return []
        lines = piece.split(b"\n")
        if self._pending:
            self._pending.append(lines[0])
            lines[0] = b"".join(self._pending)
            self._pending = []
        rest = lines.pop()
        if rest:
            self._pending.append(rest)
        return self._lines(lines)

    def end(self) -> list[Event]:
        lines = [b"".join(self._pending)] if self._pending else []
        self._pending = []
        events = self._lines(lines)
        if self._data:
            events.append(self._dispatch())
        return events

    def _lines(self, lines: list[bytes]) -> list[Event]:
        events: list[Event] = []
        for line in lines:
            if not line:
                if self._data:
                    events.append(self._dispatch())
                self._event = ""
                continue
            if line[0] == 0x3A:  # ":" opens a comment: servers send these as keep-alives
                continue
            name, _, value = line.partition(b":")
            if value[:1] == b" ":
                value = value[1:]
            if name == b"data":
                self._data.append(value)
            elif name == b"event":
                self._event = value.decode("utf-8", "replace")
            # "id", "retry" and unknown fields are ignored
        return events

    def _dispatch(self) -> Event:
        data = self._data[0] if len(self._data) == 1 else b"\n".join(self._data)
        self._data = []
        return self._event or "message", data


class _Content(Protocol):
    async def readany(self) -> bytes: ...


class EventStream:
    """The events of a streaming body, a list of them per network read (`async for events in
    stream`). A class rather than an async generator: a caller that stops early (at [DONE])
    leaves nothing behind for the event loop to finalise."""

    __slots__ = ("_content", "_ended", "_parser")

    def __init__(self, content: _Content) -> None:
        self._content = content
        self._parser = SSEParser()
        self._ended = False

    def __aiter__(self) -> EventStream:
        return self

    async def __anext__(self) -> list[Event]:
        while not self._ended:
            piece = await self._content.readany()
            if piece:
                events = self._parser.feed(piece)
            else:
                self._ended = True
                events = self._parser.end()
            if events:
                return events
        raise StopAsyncIteration
