"""What the model is sent: compiled memory and a history window every provider accepts."""

from __future__ import annotations

from app.engine.prompt import compile_system_prompt, to_chat


def _msg(role, text="", **extra):
    return {"role": role, "content": [{"type": "text", "text": text}] if text else [], **extra}


def _call(call_id, name="search"):
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": "{}"}}


def _result(call_id, text="r"):
    return {"role": "tool", "content": [{"type": "tool_return", "tool_call_id": call_id, "content": text,
                                         "is_error": False}]}


def test_given_memory_blocks_then_they_are_compiled_after_the_system_prompt():
    prompt = compile_system_prompt("Be kind.", [{"label": "human", "value": "Sam", "limit": 50,
                                                 "description": "about the user"}])
    assert prompt.startswith("Be kind.\n\n<memory_blocks>")
    assert "<human>" in prompt and "<value>\nSam\n</value>" in prompt and "chars_current=3 chars_limit=50" in prompt


def test_given_a_window_that_starts_mid_conversation_then_it_starts_at_the_first_user_turn():
    chat = to_chat([_result("a"), _msg("assistant", "late"), _msg("user", "hi"), _msg("assistant", "hello")])
    assert [(m.role, m.text) for m in chat] == [("user", "hi"), ("assistant", "hello")]


def test_given_a_tool_result_whose_call_is_outside_the_window_then_it_is_dropped():
    chat = to_chat([_msg("user", "hi"), _result("gone"), _msg("assistant", "", tool_calls=[_call("c1")]),
                    _result("c1")])
    assert [(m.role, m.tool_call_id) for m in chat] == [("user", None), ("assistant", None), ("tool", "c1")]


def test_given_calls_awaiting_approval_then_they_join_the_assistant_turn_that_made_them():
    history = [_msg("user", "hi"), _msg("assistant", "", tool_calls=[_call("c1")]), _result("c1"),
               {"role": "approval", "content": [], "tool_calls": [_call("c2", "append")]},
               {"role": "approval", "content": [], "approvals": [{"type": "approval", "tool_call_id": "c2"}]},
               _result("c2", "done")]
    chat = to_chat(history)
    assert [call.id for call in chat[1].tool_calls] == ["c1", "c2"]
    assert [(m.role, m.tool_call_id) for m in chat[2:]] == [("tool", "c1"), ("tool", "c2")]


def test_given_system_input_then_it_becomes_a_labelled_user_turn():
    assert to_chat([_msg("system", "be brief")])[0].text == "[system message] be brief"


def test_given_another_runs_messages_between_a_call_and_its_result_then_the_result_follows_its_call():
    history = [_msg("user", "A?"), _msg("assistant", "", tool_calls=[_call("a1")]),
               _msg("user", "B?"), _msg("assistant", "B!"),  # another request, committed meanwhile
               _result("a1", "late result")]
    chat = to_chat(history)
    assert [(m.role, m.text, m.tool_call_id) for m in chat] == [
        ("user", "A?", None), ("assistant", "", None), ("tool", "late result", "a1"),
        ("user", "B?", None), ("assistant", "B!", None)]


def test_given_a_call_whose_result_was_never_recorded_then_an_error_result_stands_in_for_it():
    chat = to_chat([_msg("user", "hi"), _msg("assistant", "", tool_calls=[_call("x1")]), _msg("user", "next")])
    assert (chat[2].role, chat[2].tool_call_id, chat[2].is_error) == ("tool", "x1", True)
    assert chat[3].text == "next"
