"""What the model is sent: compiled memory and a history window every provider accepts."""

from __future__ import annotations

from app.engine.prompt import OMITTED_NOTICE_ID, TurnCache, compile_system_prompt, to_chat


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


PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAQAAAC1HAwCAAAAC0lEQVR42mNkYAAAAAYAAjCB0C8AAAAASUVORK5CYII="


def _with_image(role, source, before="What is ", after=" this?"):
    return {"role": role, "content": [{"type": "text", "text": before}, {"type": "image", "source": source},
                                      {"type": "text", "text": after}]}


def test_given_a_user_message_with_images_then_its_turn_carries_them_in_place_without_copying_the_data():
    source = {"type": "base64", "media_type": "image/png", "data": PNG}
    url = {"type": "url", "url": "https://example.com/cat.png", "detail": "low"}
    message = _with_image("user", source)
    message["content"].append({"type": "image", "source": url})
    [turn] = to_chat([message])
    assert turn.role == "user" and turn.text == "What is  this?"
    base64_image, url_image = turn.images
    assert (base64_image.kind, base64_image.media_type, base64_image.at) == ("base64", "image/png", len("What is "))
    assert base64_image.data is source["data"]  # the stored string itself: history costs no copy
    assert (url_image.kind, url_image.url, url_image.detail, url_image.at) == (
        "url", "https://example.com/cat.png", "low", len("What is  this?"))


def test_given_system_input_with_an_image_then_the_labelled_user_turn_keeps_it_after_the_label():
    [turn] = to_chat([_with_image("system", {"type": "url", "url": "https://example.com/a.png"}, before="")])
    assert turn.role == "user" and turn.text == "[system message]  this?"
    assert [image.at for image in turn.images] == [len("[system message] ")]


def test_given_a_letta_file_source_carrying_its_data_then_it_is_sent_as_base64():
    source = {"type": "letta", "file_id": "file-1", "media_type": "image/jpeg", "data": PNG}
    [turn] = to_chat([_with_image("user", source)])
    assert (turn.images[0].kind, turn.images[0].media_type, turn.images[0].data) == ("base64", "image/jpeg", PNG)


def test_given_an_image_earlier_in_history_then_a_later_turn_still_sends_it():
    history = [_with_image("user", {"type": "url", "url": "https://example.com/a.png"}), _msg("assistant", "A cat."),
               _msg("user", "What colour is it?")]
    chat = to_chat(history)
    assert [len(m.images) for m in chat] == [1, 0, 0]
    assert chat[0].images[0].url == "https://example.com/a.png"


def test_given_text_only_messages_then_turns_carry_no_images():
    assert [m.images for m in to_chat([_msg("user", "hi"), _msg("assistant", "hello")])] == [(), ()]


def test_given_a_turn_cache_when_the_same_history_is_sent_twice_then_each_message_is_converted_once():
    history = [_msg("user", "hi", id="m1"), _msg("assistant", "", id="m2", tool_calls=[_call("c1")]),
               {**_result("c1"), "id": "m3"}, _msg("system", "note", id="m4"), _msg("assistant", "bye", id="m5")]
    cache = TurnCache()
    first = to_chat(history, cache=cache)
    second = to_chat([*history, _msg("user", "next", id="m6")], cache=cache)
    assert first == to_chat(history)  # the same answer as without a cache
    # Each stored message's turn was converted once, then reused (tool results are cheap: rebuilt).
    assert all(a is b for a, b in zip(first, second, strict=False) if a.role != "tool")
    assert second[-1].text == "next"


def test_given_omitted_message_notices_when_cached_then_each_keeps_its_own_text():
    cache = TurnCache()
    notices = [_msg("system", f"left out: {size} bytes", id=OMITTED_NOTICE_ID) for size in (10, 20)]
    assert [to_chat([notice], cache=cache)[0].text for notice in notices] == [
        "[system message] left out: 10 bytes", "[system message] left out: 20 bytes"]


def test_given_a_full_turn_cache_when_more_turns_come_then_the_oldest_leave_and_answers_stay_right():
    cache = TurnCache(max_bytes=1000)
    for i in range(50):
        assert to_chat([_msg("user", f"message {i} " + "x" * 100, id=f"m{i}")], cache=cache)[0].text.startswith(
            f"message {i} ")
    assert cache._bytes <= 1000
