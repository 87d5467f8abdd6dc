"""Server-Sent Events parsed from raw bytes in arbitrary pieces (app/providers/events.py)."""

from __future__ import annotations

from app.providers.events import Event, SSEParser


def parse(raw: bytes, size: int) -> list[Event]:
    parser = SSEParser()
    events: list[Event] = []
    for start in range(0, len(raw), size):
        events.extend(parser.feed(raw[start:start + size]))
    return events + parser.end()


def every_split(raw: bytes) -> list[list[Event]]:
    """The events of `raw` fed in pieces of every size, and cut once at every offset."""
    results = [parse(raw, size) for size in range(1, len(raw) + 1)]
    for cut in range(len(raw) + 1):
        parser = SSEParser()
        results.append(parser.feed(raw[:cut]) + parser.feed(raw[cut:]) + parser.end())
    return results


def test_given_lf_crlf_and_cr_line_ends_split_anywhere_when_parsed_then_each_event_comes_once() -> None:
    raw = "data: a\r\n\r\ndata: b\n\ndata: c\r\rdata: é\r\n\r\n".encode()
    expected = [("message", b"a"), ("message", b"b"), ("message", b"c"), ("message", "é".encode())]
    for events in every_split(raw):
        assert events == expected


def test_given_multi_line_data_comments_and_event_names_when_parsed_then_the_spec_assembles_them() -> None:
    raw = (b": keep-alive\r\n\r\n"
           b"event: content_block_delta\r\ndata: {\"a\":\r\ndata:1}\r\nid: 7\r\nretry: 10\r\n\r\n"
           b":another comment\n"
           b"data:no space\n\n"
           b"event: ping\n\n"  # an event without data is not dispatched, and its type does not linger
           b"data: [DONE]\n\n")
    expected = [("content_block_delta", b'{"a":\n1}'), ("message", b"no space"), ("message", b"[DONE]")]
    for events in every_split(raw):
        assert events == expected


def test_given_a_body_ending_without_its_blank_line_when_ended_then_the_pending_event_is_dispatched() -> None:
    for events in every_split(b"data: {\"x\": 1}\n\ndata: [DONE]"):
        assert events == [("message", b'{"x": 1}'), ("message", b"[DONE]")]


def test_given_a_crlf_split_between_its_cr_and_lf_when_parsed_then_no_blank_line_is_invented() -> None:
    parser = SSEParser()
    assert parser.feed(b"data: a\r") == []
    # The LF completes the CRLF; only the next line end makes the blank line that dispatches.
    assert parser.feed(b"\n") == []
    assert parser.feed(b"data: b\r") == []
    assert parser.feed(b"\n\r\n") == [("message", b"a\nb")]


def test_given_a_line_of_a_megabyte_in_small_pieces_when_parsed_then_it_arrives_whole() -> None:
    payload = b"x" * 1_000_000
    raw = b"data: " + payload + b"\n\n"
    assert parse(raw, 4096) == [("message", payload)]
