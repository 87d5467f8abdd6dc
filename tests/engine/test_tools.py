"""The built-in tools on a run's state."""

from __future__ import annotations

import json

import pytest

from app.engine.tools import BUILTIN_TOOLS, ToolContext, ToolError, validate_arguments


def _ctx(value: str = "line one\nline two", limit: int = 100) -> ToolContext:
    return ToolContext(blocks={"human": {"label": "human", "value": value, "limit": limit}},
                       messages=[], changed_blocks=set())


def run(name: str, ctx: ToolContext, **args) -> str:
    return BUILTIN_TOOLS[name].run(ctx, args)


def test_given_core_memory_append_then_the_content_goes_on_a_new_line_and_the_block_is_marked_changed():
    ctx = _ctx()
    result = run("core_memory_append", ctx, label="human", content="line three")
    assert ctx.blocks["human"]["value"] == "line one\nline two\nline three"
    assert ctx.changed_blocks == {"human"} and "line three" in result


def test_given_core_memory_replace_of_missing_text_then_a_tool_error_and_no_change():
    ctx = _ctx()
    with pytest.raises(ToolError, match="not found"):
        run("core_memory_replace", ctx, label="human", old_content="nope", new_content="x")
    assert ctx.changed_blocks == set()


def test_given_memory_replace_then_the_old_string_must_occur_exactly_once():
    ctx = _ctx("a a b")
    with pytest.raises(ToolError, match="2 times"):
        run("memory_replace", ctx, label="human", old_str="a", new_str="c")
    run("memory_replace", ctx, label="human", old_str="b", new_str="c")
    assert ctx.blocks["human"]["value"] == "a a c"


@pytest.mark.parametrize(("line", "expected"), [(0, "new\nline one\nline two"), (1, "line one\nnew\nline two"),
                                                (-1, "line one\nline two\nnew")])
def test_given_memory_insert_then_the_text_lands_at_the_line(line, expected):
    ctx = _ctx()
    run("memory_insert", ctx, label="human", new_str="new", insert_line=line)
    assert ctx.blocks["human"]["value"] == expected


def test_given_an_edit_over_the_block_limit_or_an_unknown_label_then_a_tool_error():
    with pytest.raises(ToolError, match="limit"):
        run("core_memory_append", _ctx(limit=20), label="human", content="much too long for it")
    with pytest.raises(ToolError, match="No memory block"):
        run("core_memory_append", _ctx(), label="persona", content="x")


def test_given_conversation_search_then_matching_messages_come_newest_first():
    ctx = _ctx()
    ctx.messages = [
        {"role": "user", "created_at": "t1", "content": [{"type": "text", "text": "I like Tea"}]},
        {"role": "assistant", "created_at": "t2", "content": [{"type": "text", "text": "tea noted"}]},
        {"role": "user", "created_at": "t3", "content": [{"type": "text", "text": "coffee"}]},
    ]
    found = json.loads(run("conversation_search", ctx, query="tea"))
    assert [r["timestamp"] for r in found["results"]] == ["t2", "t1"] and found["message"] == "Showing 2 results:"
    assert json.loads(run("conversation_search", ctx, query="tea", roles=["user"]))["results"][0]["timestamp"] == "t1"
    assert json.loads(run("conversation_search", ctx, query="juice"))["message"] == "No results found."


@pytest.mark.parametrize(("arguments", "problem"), [
    ([], "must be a JSON object"), ({}, "missing required argument(s): label, content"),
    ({"label": 1, "content": "x"}, "must be of type string"), ({"label": "h", "content": "x", "z": 1}, "unexpected"),
])
def test_given_arguments_that_do_not_fit_the_schema_then_the_reason_is_named(arguments, problem):
    assert problem in validate_arguments(BUILTIN_TOOLS["core_memory_append"].parameters, arguments)
