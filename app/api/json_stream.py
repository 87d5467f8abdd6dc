"""A JSON object read from a request stream a piece at a time, one of its arrays handed out a
group of elements at a time: a 100,000-request batch is never held whole, as bytes, text or
Python objects.

Each value is parsed by the json module's own scanner, with the hooks and checks of
app.api.body_guard (UTF-8, depth, no NaN, 64-bit integers, no lone surrogate, no key twice), so a
body is refused with the same sentences as when it is parsed whole.
"""

from __future__ import annotations

import codecs
import json
import re
from collections.abc import Callable, Iterator
from json.decoder import scanstring
from typing import Any

from app.api.body_guard import (
    MAX_JSON_DEPTH,
    BodyRefused,
    json_depth,
    repeated_key,
    strict_decoder,
)

#: Bytes asked of the stream per read; a value longer than the text held doubles the next read,
#: so that a single long value is still read in linear time.
READ_BYTES = 64 * 1024

_WHITESPACE = re.compile(r"[ \t\n\r]*")
#: What may follow a complete value (or a key).
_AFTER_VALUE = frozenset(" \t\n\r,]}:")
#: Reads in a row on which taking many elements at once failed, after which it is not tried again.
_FAST_FAILURES = 2
#: Earlier `},` tried when the text up to the last one held does not parse as whole elements.
_CUT_ATTEMPTS = 3
#: str forms of body_guard's surrogate patterns (the text here is already decoded).
_SURROGATE_PAIR = re.compile(r"\\u[dD][89abAB][0-9a-fA-F]{2}\\u[dD][c-fC-F][0-9a-fA-F]{2}")
_SURROGATE = re.compile(r"\\u[dD][89a-fA-F][0-9a-fA-F]{2}")


class JsonObjectStream:
    """The members of the JSON object a stream holds, in the order sent (see `members`)."""

    def __init__(self, read: Callable[[int], bytes], *, prefix: bytes = b"") -> None:
        self._read = read
        self._utf8 = codecs.getincrementaldecoder("utf-8")()
        self._scan = strict_decoder().scan_once
        self._bytes_decoded = 0
        self._fills = 0
        self._element_ending = "},"
        #: The read (`_fills`) during which many elements were last tried at once.
        self._fast_tried = -1
        self._fast_failures = 0
        self.text = ""
        self.pos = 0
        #: Where the text kept on a read starts (the group being read), if not at `pos`.
        self._keep: int | None = None
        self.eof = False
        self._lines_dropped = 0
        self._column_dropped = 0
        self._prefix = prefix

    def members(self, *, array_key: str, group_size: int) -> Iterator[tuple[str, Any]]:
        """(key, value) for each member; the value of `array_key`, when it is an array, is an
        iterator of non-empty lists of its parsed elements (the complete ones a read holds, or
        up to `group_size` read one at a time), to be consumed before the next member is asked
        for. Raises BodyRefused."""
        if self._prefix:
            self._append(self._prefix)
            self._prefix = b""
        if self._peek() != "{":
            raise self._syntax("Expecting value")
        self.pos += 1
        seen: set[str] = set()
        if self._peek() == "}":
            self.pos += 1
        else:
            while True:
                if self._peek() != '"':
                    raise self._syntax("Expecting property name enclosed in double quotes")
                key = self._key()
                if key in seen:
                    raise repeated_key(key)
                seen.add(key)
                if self._peek() != ":":
                    raise self._syntax("Expecting ':' delimiter")
                self.pos += 1
                if self._peek() == "[" and key == array_key:
                    yield key, self._groups(group_size)
                else:
                    yield key, self._value(levels_above=1)
                separator = self._peek()
                self.pos += 1
                if separator == "}":
                    break
                if separator != ",":
                    self.pos -= 1
                    raise self._syntax("Expecting ',' delimiter")
        if self._peek():
            raise self._syntax("Extra data")

    def _groups(self, size: int) -> Iterator[list[Any]]:
        self.pos += 1
        if self._peek() == "]":
            self.pos += 1
            return
        self._keep = self.pos
        try:
            yield from self._grouped(size)
        finally:
            self._keep = None

    def _grouped(self, size: int) -> Iterator[list[Any]]:
        group: list[Any] = []
        while True:
            if not group and self._fast_tried != self._fills and (many := self._complete_objects()):
                self._check(self._keep, levels_above=2)
                yield many
                self._keep = self.pos
                continue
            fills = self._fills
            self._peek()
            group.append(self._parse(levels_above=2)[0])
            separator = self._peek()
            if separator not in (",", "]"):
                raise self._syntax("Expecting ',' delimiter")
            self.pos += 1
            # After a read, the objects read may be taken many at a time again.
            if len(group) >= size or separator == "]" or self._fills != fills:
                self._check(self._keep, levels_above=2)
                yield group
                group = []
                self._keep = self.pos
            if separator == "]":
                return

    def _complete_objects(self) -> list[Any] | None:
        """Every element from `pos` up to the last `},` held, parsed in one call of the scanner;
        None if there is none, or if they do not parse as elements (a `},` inside a string or a
        nested object: then they are read one at a time, which says what is wrong, if anything).
        The text up to a `}` that parses as complete values, wrapped in brackets, ends outside
        any string and nesting: exactly where an element ends."""
        # Tried once per read, and no more once it failed on two reads in a row: a body it does
        # not fit is read at the cost of one element at a time, plus a few scans.
        self._fast_tried = self._fills
        if self._fast_failures >= _FAST_FAILURES:
            return None
        text = self.text
        pos = _WHITESPACE.match(text, self.pos).end()
        if not text.startswith("{", pos):
            return None
        # The last characters of the elements cut last (`"},` or `}]},`, say) end an element
        # more surely than `},` alone, which objects nested in an element also hold.
        for ending in dict.fromkeys((self._element_ending, "},")):
            end = len(text)
            for _ in range(_CUT_ATTEMPTS):
                found = text.rfind(ending, pos, end)
                if found < 0:
                    break
                cut = found + len(ending) - 1  # the comma
                wrapped = "[" + text[pos:cut] + "]"
                try:
                    values, stop = self._scan(wrapped, 0)
                except (StopIteration, ValueError, RecursionError):
                    end = cut - 1
                    continue
                if stop != len(wrapped):  # the array ended before the cut
                    return None
                self._fast_failures = 0
                last = text[max(pos, cut - 4):cut]
                self._element_ending = last[len(last.rstrip('}]"')):] + ","
                self.pos = cut + 1
                return values
        self._fast_failures += 1
        return None

    def _value(self, *, levels_above: int) -> Any:
        value, start = self._parse(levels_above=levels_above)
        self._check(start, levels_above=levels_above)
        return value

    def _parse(self, *, levels_above: int) -> tuple[Any, int]:
        """The value at `pos` and where it starts, reading more until it is complete."""
        while True:
            start = self.pos
            try:
                value, end = self._scan(self.text, start)
            except StopIteration as exc:
                if not self.eof:
                    self._fill()
                    continue
                self._check_depth(start, levels_above)
                # The scanner stops where a value was expected, which may lie inside this one.
                raise self._syntax("Expecting value", exc.value if isinstance(exc.value, int) else None) from None
            except json.JSONDecodeError as exc:
                if not self.eof:
                    self._fill()
                    continue
                self._check_depth(start, levels_above)
                raise self._syntax(exc.msg, exc.pos) from None
            except BodyRefused:
                if self.eof:
                    raise
                self._fill()  # a number cut short may read as another one (5,000 digits as 4,096)
                continue
            except ValueError:  # int() refuses thousands of digits before the hook can say more
                if not self.eof:
                    self._fill()
                    continue
                raise BodyRefused("a number has too many digits") from None
            except RecursionError:  # the scanner recursed a thousand levels: far past the limit
                self._check_depth(start, levels_above)
                raise BodyRefused(f"arrays and objects are nested too deep; the limit is {MAX_JSON_DEPTH}") from None
            # A number may go on in the next read ("-1." reads as -1): a value is taken once what
            # follows it is held, and may follow a value.
            if not self.eof and (end == len(self.text) or self.text[end] not in _AFTER_VALUE):
                self._fill()
                continue
            self.pos = end
            return value, start

    def _key(self) -> str:
        while True:
            start = self.pos + 1
            try:
                key, end = scanstring(self.text, start)
            except json.JSONDecodeError as exc:
                if not self.eof:
                    self._fill()
                    continue
                raise self._syntax(exc.msg, exc.pos) from None
            self.pos = end
            self._check(start, levels_above=0)
            return key

    def _check(self, start: int, *, levels_above: int) -> None:
        """The checks the scanner does not make, on the text from `start` to `pos`."""
        span = self.text[start:self.pos]
        # The span's own depth first: the text after it may be megabytes (a read after a long value).
        if (span.count("[") + span.count("{") + levels_above > MAX_JSON_DEPTH
                and json_depth(span.encode("utf-8", "surrogatepass")) + levels_above > MAX_JSON_DEPTH):
            self._check_depth(start, levels_above)
        if "\\u" in span and _SURROGATE.search(_SURROGATE_PAIR.sub("", span.replace("\\\\", "__"))):
            raise BodyRefused("a string holds a lone UTF-16 surrogate escape (\\uD800 to \\uDFFF), which is "
                              "not text")

    def _check_depth(self, start: int, levels_above: int) -> None:
        """Refuse the text from `start` on if it nests too deep, naming the depth the whole body
        has (the text before passed this check): read to its end first."""
        if json_depth(self.text[start:].encode("utf-8", "surrogatepass")) + levels_above <= MAX_JSON_DEPTH:
            return
        self._keep = start
        while not self.eof:
            self._fill()
        depth = json_depth(self.text[self._keep:].encode("utf-8", "surrogatepass")) + levels_above
        if depth > MAX_JSON_DEPTH:
            raise BodyRefused(f"arrays and objects are nested {depth} levels deep; the limit is {MAX_JSON_DEPTH}")

    def _peek(self) -> str:
        """The next character that is not whitespace ("" at the end), `pos` moved onto it."""
        while True:
            self.pos = _WHITESPACE.match(self.text, self.pos).end()
            if self.pos < len(self.text):
                return self.text[self.pos]
            if self.eof:
                return ""
            self._fill()

    def _fill(self) -> None:
        """Read more: at least READ_BYTES, and as much as is held when a value outgrows it."""
        dropped = self.pos if self._keep is None else min(self._keep, self.pos)
        if dropped:
            newlines = self.text.count("\n", 0, dropped)
            if newlines:
                self._lines_dropped += newlines
                self._column_dropped = dropped - self.text.rfind("\n", 0, dropped) - 1
            else:
                self._column_dropped += dropped
            self.text = self.text[dropped:]
            self.pos -= dropped
            if self._keep is not None:
                self._keep -= dropped
        data = self._read(max(READ_BYTES, len(self.text)))
        self._fills += 1
        if not data:
            self.eof = True
        self._append(data)

    def _append(self, data: bytes) -> None:
        pending = len(self._utf8.getstate()[0])  # the start of a character cut by the last read
        try:
            self.text += self._utf8.decode(data, final=self.eof)
        except UnicodeDecodeError as exc:
            raise BodyRefused(f"not valid UTF-8 (at byte {self._bytes_decoded - pending + exc.start})") from None
        self._bytes_decoded += len(data)

    def _syntax(self, message: str, at: int | None = None) -> BodyRefused:
        """A syntax error at `at` (default `pos`) in the buffer, placed in the whole body."""
        at = self.pos if at is None else at
        newlines = self.text.count("\n", 0, at)
        column = at - self.text.rfind("\n", 0, at) if newlines else self._column_dropped + at + 1
        return BodyRefused(f"not a valid JSON document ({message} at line {self._lines_dropped + newlines + 1} "
                           f"column {column})")
