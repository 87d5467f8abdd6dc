"""JsonObjectStream against the whole-body parser it stands in for (app.api.body_guard.parse_json):
the same members and elements, and the same sentence for every body it refuses, whatever the
sizes the stream hands the body out in."""

from __future__ import annotations

import io
import json
from typing import Any

import pytest

from app.api import json_stream
from app.api.body_guard import BodyRefused, json_depth, parse_json
from app.api.json_stream import READ_BYTES, JsonObjectStream

PIECES = [1, 3, 64, READ_BYTES]
ITEM = '{"agent_id": "a", "input": "hi"}'
NESTED_ITEM = '{"agent_id": "a", "messages": [{"role": "user", "content": "x"}, {"role": "user", "content": "},{"}]}'

VALID = [
    '{"requests": [' + ", ".join([ITEM] * 300) + '], "metadata": {"k": [1, 2.5, null, true]}}',
    '{"metadata": {"k": {}}, "requests": [' + ",".join([NESTED_ITEM] * 200) + "]}",
    '\n{ "requests" :\n[\n' + ",\n".join([ITEM, "7", '"s"', "[]", "-1.5e3", "null"] * 40) + '\n]\n,"x":1}\n',
    '{"requests": [], "callback_url": "https://e.com"}',
    '{"requests": {"not": "an array"}, "x": "\\u00e9\\ud83d\\ude00 \\\\\\" }, {"}',
    "{}",
    # `},` inside every string: taking many elements at once fails, then is given up
    '{"requests": [' + ", ".join(['{"input": "x}, {\\"y}, ' + str(i) + '"}' for i in range(400)]) + "]}",
]
REFUSED = [
    '{"requests": [' + ", ".join([ITEM] * 100) + ", " + ITEM.replace('"hi"', '"h" "i"') + "]}",
    '{"requests": [' + ", ".join([ITEM] * 100) + ",]}",
    '{"requests": [' + ", ".join([ITEM] * 100) + "]",
    '{"requests": [' + ", ".join([ITEM] * 100) + "], }",
    '{"requests": [' + ", ".join([ITEM] * 100) + "]} x",
    '{"requests": [' + ", ".join([ITEM] * 100) + ', {"a": NaN}]}',
    '{"requests": [' + ", ".join([ITEM] * 100) + ', {"a": ' + "9" * 5000 + "}]}",
    '{"requests": [' + ", ".join([ITEM] * 100) + ', {"a": 9223372036854775808}]}',
    '{"requests": [' + ", ".join([ITEM] * 100) + ', {"a": "\\udc00"}]}',
    '{"requests": [' + ", ".join([ITEM] * 100) + ', {"a": 1, "a": 2}]}',
    '{"requests": [' + ", ".join([ITEM] * 100) + "], \"requests\": 1}",
    '{"requests": [' + ", ".join([ITEM] * 100) + ", " + "[" * 63 + "]" * 63 + "]}",
    '{"requests": [' + "[" * 3000,
    '{"metadata": ' + '{"a": ' * 70 + "1" + "}" * 70 + "}",
    '{"requests"\n\n  [1]}',
    "{requests: 1}",
    '{"requests": [1 2]}',
    # a value that is not one, inside an element or another member: the sentence places it
    '{"requests": [' + ", ".join([ITEM] * 100) + ', {"agent_id": "a", "input": x}]}',
    '{"requests": [' + ", ".join([ITEM] * 100) + ', [1, -]]}',
    '{"metadata": {"a": tru}, "requests": []}',
]


def _read(text: str, piece: int) -> dict[str, Any]:
    data = io.BytesIO(text.encode())
    stream = JsonObjectStream(lambda size: data.read(min(size, piece)), prefix=data.read(min(5, piece)))
    found: dict[str, Any] = {}
    for key, value in stream.members(array_key="requests", group_size=7):
        if isinstance(value, dict | list | str | int | float | bool) or value is None:
            found[key] = value
        else:
            groups = list(value)
            assert all(groups)
            found[key] = [element for group in groups for element in group]
    return found


@pytest.mark.parametrize("piece", PIECES)
@pytest.mark.parametrize("text", VALID, ids=range(len(VALID)))
def test_given_a_valid_object_when_read_in_pieces_then_it_holds_what_the_whole_body_parser_reads(text, piece):
    assert _read(text, piece) == parse_json(text.encode()) == json.loads(text)


@pytest.mark.parametrize("piece", PIECES)
@pytest.mark.parametrize("text", REFUSED, ids=range(len(REFUSED)))
def test_given_a_refused_body_when_read_in_pieces_then_the_sentence_is_the_whole_body_parsers(text, piece):
    with pytest.raises(BodyRefused) as whole:
        parse_json(text.encode())
    with pytest.raises(BodyRefused) as streamed:
        _read(text, piece)
    assert str(streamed.value) == str(whole.value)


def test_given_a_long_value_then_many_elements_the_fast_path_misses_when_read_then_the_depth_checks_stay_linear(
        monkeypatch):
    """A long value makes one read bring megabytes of elements after it; each group of them read
    one at a time was depth-checked with all the text after it, which grew as the square of the
    body (12 MB took 4 s, 100,000 requests minutes)."""
    scanned: list[int] = []

    def counted(data: bytes) -> int:
        scanned.append(len(data))
        return json_depth(data)

    monkeypatch.setattr(json_stream, "json_depth", counted)
    element = json.dumps({"agent_id": "a", "input": "[" * 70 + '"},x' * 12})  # `},` in its text, 70 brackets
    text = ('{"requests": [' + ",".join([element] * 50 + [json.dumps({"agent_id": "a", "input": "y" * 4_000_000})]
                                        + [element] * 10_000) + "]}")

    assert len(_read(text, READ_BYTES)["requests"]) == 10_051
    assert sum(scanned) <= 2 * len(text)
