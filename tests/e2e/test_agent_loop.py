"""The agent step loop end to end (real web, worker, Redis; scripted local model servers):
every stop_reason for the reason the seed gives it, with the item's stop_reason, the batch's
aggregate per SPEC, and the messages recorded."""

from __future__ import annotations

import json

import pytest

from tests.e2e.conftest import wait_for_status, wait_until
from tests.fakes.model_servers import Reply
from tests.support.scenario import tool_call


def roles(messages) -> list[str]:
    return [m.role for m in messages]


def test_given_a_plain_answer_then_the_request_ends_end_turn_and_the_batch_completes(scenario):
    s = scenario(replies=[Reply(text="Hi Sam.")])
    batch, [item], messages = s.run({"input": "hello"})
    assert (item["status"], item["stop_reason"]) == ("succeeded", "end_turn")
    assert (batch.status, batch.stop_reason) == ("completed", "end_turn")
    assert roles(messages) == ["user", "assistant"] and messages[1].content[0].text == "Hi Sam."


def test_given_a_model_that_keeps_calling_tools_then_max_steps_stops_it(scenario):
    s = scenario(tools=["conversation_search"], replies=[tool_call("conversation_search", query="x")] * 5)
    batch, [item], messages = s.run({"input": "search", "max_steps": 2})
    assert (item["status"], item["stop_reason"]) == ("succeeded", "max_steps")
    assert (batch.status, batch.stop_reason) == ("completed", "end_turn")
    assert roles(messages) == ["user", "assistant", "tool", "assistant", "tool"]
    assert len(s.model.requests) == 2


def test_given_an_exit_loop_rule_when_its_tool_runs_then_tool_rule_ends_the_request(scenario):
    s = scenario(tools=["conversation_search"],
                 tool_rules=[{"type": "exit_loop", "tool_name": "conversation_search"}],
                 replies=[tool_call("conversation_search", query="hello")])
    batch, [item], messages = s.run({"input": "hello"})
    assert (item["status"], item["stop_reason"]) == ("succeeded", "tool_rule")
    assert (batch.status, batch.stop_reason) == ("completed", "end_turn")
    assert roles(messages) == ["user", "assistant", "tool"]
    assert messages[1].tool_calls[0].function.name == "conversation_search"
    assert json.loads(messages[2].tool_returns[0].func_response)["message"].startswith("Showing")


def test_given_a_client_tool_when_the_model_calls_it_then_the_request_pauses_requires_approval(scenario):
    s = scenario(replies=[tool_call("get_weather", city="Paris")])
    weather = {"name": "get_weather", "description": "Weather of a city",
               "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}
    batch, [item], messages = s.run({"input": "weather?", "client_tools": [weather]})
    assert (item["status"], item["stop_reason"]) == ("succeeded", "requires_approval")
    assert (batch.status, batch.stop_reason) == ("completed", "end_turn")
    assert roles(messages) == ["user", "assistant", "approval"]
    assert messages[2].tool_calls[0].function.name == "get_weather"
    assert s.model.requests[0]["tools"][0]["function"]["name"] == "get_weather"


def test_given_an_agent_waiting_for_approval_when_an_ordinary_request_runs_then_error_and_nothing_is_recorded(
        scenario):
    s = scenario(replies=[tool_call("get_weather", city="Paris")])
    s.run({"input": "weather?", "client_tools": [{"name": "get_weather"}]})
    batch, [item], messages = s.run({"input": "anything else?"})
    assert (item["status"], item["stop_reason"]) == ("errored", "error")
    assert "waiting for approval of get_weather" in item["error"]
    assert (batch.status, batch.stop_reason) == ("failed", "error")
    assert messages == [] and len(s.model.requests) == 1


def test_given_a_run_first_rule_when_the_model_answers_without_a_tool_then_no_tool_call(scenario):
    s = scenario(tools=["conversation_search", "core_memory_append"],
                 tool_rules=[{"type": "run_first", "tool_name": "conversation_search"}],
                 replies=[Reply(text="I will not search.")])
    batch, [item], messages = s.run({"input": "hello"})
    assert (item["status"], item["stop_reason"]) == ("errored", "no_tool_call")
    assert "run_first" in item["error"]
    assert (batch.status, batch.stop_reason) == ("failed", "no_tool_call")
    assert roles(messages) == ["user", "assistant"]
    sent = s.model.requests[0]
    assert [tool["function"]["name"] for tool in sent["tools"]] == ["conversation_search"]
    assert sent["tool_choice"] == "required"


def test_given_a_required_before_exit_tool_that_never_comes_then_no_tool_call(scenario):
    s = scenario(tools=["conversation_search", "core_memory_append"],
                 tool_rules=[{"type": "required_before_exit", "tool_name": "core_memory_append"}],
                 replies=[tool_call("conversation_search", query="a"), Reply(text="Done.")])
    batch, [item], messages = s.run({"input": "hello"})
    assert (item["stop_reason"], batch.stop_reason) == ("no_tool_call", "no_tool_call")
    assert "core_memory_append" in item["error"]
    assert roles(messages) == ["user", "assistant", "tool", "assistant"]


@pytest.mark.parametrize(("reply", "why"), [
    (tool_call("delete_everything"), "unknown tool 'delete_everything'"),
    (Reply(text="", tool_calls=[("conversation_search", "{not json")]), "not valid JSON"),
    (tool_call("conversation_search", limit=3), "missing required argument(s): query"),
])
def test_given_a_bad_tool_call_then_invalid_tool_call_and_the_call_is_answered_not_executed(scenario, reply, why):
    s = scenario(tools=["conversation_search"], replies=[reply])
    batch, [item], messages = s.run({"input": "hello"})
    assert (item["status"], item["stop_reason"]) == ("errored", "invalid_tool_call")
    assert why in item["error"]
    assert (batch.status, batch.stop_reason) == ("failed", "invalid_tool_call")
    assert roles(messages) == ["user", "assistant", "tool"]
    assert messages[2].tool_returns[0].status == "error"
    assert "not executed" in messages[2].tool_returns[0].func_response


def test_given_a_tool_the_rules_do_not_allow_now_then_invalid_tool_call(scenario):
    s = scenario(tools=["conversation_search", "core_memory_append"],
                 tool_rules=[{"type": "constrain_child_tools", "tool_name": "conversation_search",
                              "children": ["core_memory_append"]}],
                 replies=[tool_call("conversation_search", query="a"), tool_call("conversation_search", query="b")])
    batch, [item], _ = s.run({"input": "hello"})
    assert (item["stop_reason"], batch.stop_reason) == ("invalid_tool_call", "invalid_tool_call")
    assert "do not allow 'conversation_search'" in item["error"]
    assert [t["function"]["name"] for t in s.model.requests[1]["tools"]] == ["core_memory_append"]
    assert s.model.requests[1]["tool_choice"] == "required"


def test_given_max_count_per_step_when_reached_then_the_tool_is_no_longer_offered(scenario):
    s = scenario(tools=["conversation_search", "core_memory_append"],
                 tool_rules=[{"type": "max_count_per_step", "tool_name": "conversation_search", "max_count_limit": 1}],
                 replies=[tool_call("conversation_search", query="a"), Reply(text="ok")])
    _, [item], _ = s.run({"input": "hello"})
    assert item["stop_reason"] == "end_turn"
    assert [t["function"]["name"] for t in s.model.requests[1]["tools"]] == ["core_memory_append"]


def test_given_an_empty_stream_then_invalid_llm_response(scenario):
    s = scenario(replies=[Reply(raw_sse=["[DONE]"])])
    batch, [item], messages = s.run({"input": "hello"})
    assert (item["status"], item["stop_reason"]) == ("errored", "invalid_llm_response")
    assert (batch.status, batch.stop_reason) == ("failed", "invalid_llm_response")
    assert roles(messages) == ["user"]


def test_given_a_provider_refusal_then_llm_api_error_keeps_the_providers_reason(scenario):
    s = scenario(replies=[Reply(status=400, error_message="This model's maximum context length is 8192 tokens")])
    batch, [item], messages = s.run({"input": "hello"})
    assert (item["status"], item["stop_reason"]) == ("errored", "llm_api_error")
    assert "maximum context length" in item["error"]
    assert (batch.status, batch.stop_reason) == ("failed", "llm_api_error")
    assert roles(messages) == ["user"]


def test_given_requests_failing_in_different_ways_then_the_failed_batch_says_error(scenario):
    s = scenario(replies=[Reply(status=400), Reply(raw_sse=["[DONE]"])])
    s.model.script = lambda body, n: Reply(status=400) if "first" in json.dumps(body) else Reply(raw_sse=["[DONE]"])
    batch, items, _ = s.run({"input": "first"}, {"input": "second"})
    assert sorted(item["stop_reason"] for item in items) == ["invalid_llm_response", "llm_api_error"]
    assert (batch.status, batch.stop_reason) == ("failed", "error")


def test_given_one_success_and_one_failure_then_the_batch_completes(scenario):
    s = scenario()
    s.model.script = lambda body, n: Reply(status=400) if "first" in json.dumps(body) else None
    batch, _, _ = s.run({"input": "first"}, {"input": "second"})
    assert (batch.status, batch.stop_reason) == ("completed", "end_turn")
    assert batch.request_counts["succeeded"] == 1 and batch.request_counts["errored"] == 1


def test_given_a_cancelled_batch_then_its_running_request_ends_cancelled_with_its_input_kept(scenario):
    s = scenario(replies=[Reply(first_token_delay_s=30)])
    batch = s.client.batches.create(requests=[{"agent_id": s.agent.id, "input": "slow"}])
    assert s.model.wait_for_open_streams(1, timeout_s=10)
    s.client.batches.cancel(batch.id)
    done = wait_for_status(s.client, batch.id, ("cancelled",), timeout_s=2)
    assert done.stop_reason == "cancelled"
    assert wait_until(lambda: s.items(batch.id)[0]["status"] == "cancelled", timeout_s=5)
    assert s.client.batches.retrieve(batch.id).request_counts["cancelled"] == 1
    [item] = s.items(batch.id)
    assert (item["status"], item["stop_reason"]) == ("cancelled", "cancelled")
    assert roles(s.messages(batch.id)) == ["user"]
