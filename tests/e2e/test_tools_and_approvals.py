"""Memory tools, approvals and the Letta message union end to end, through the official SDK."""

from __future__ import annotations

import json

import letta_client
from letta_client.types.agents import (
    ApprovalRequestMessage,
    ApprovalResponseMessage,
    AssistantMessage,
    ReasoningMessage,
    ToolCallMessage,
    UserMessage,
)
from letta_client.types.tool_return_message import ToolReturnMessage

from tests.e2e.conftest import wait_for_status
from tests.fakes.model_servers import FakeAnthropicServer, Reply
from tests.support.scenario import tool_call


def system_prompt(body: dict) -> str:
    return body["messages"][0]["content"]


def test_given_a_memory_tool_when_it_changes_a_block_then_the_next_step_and_the_next_request_see_it(scenario):
    s = scenario(tools=["core_memory_replace"], replies=[
        tool_call("core_memory_replace", label="human", old_content="Sam", new_content="Samantha"),
        Reply(text="Noted, Samantha."), Reply(text="Hello again.")])
    _, [item], messages = s.run({"input": "Call me Samantha."})
    assert item["stop_reason"] == "end_turn"
    assert "Name: Sam\n" in system_prompt(s.model.requests[0])
    assert "Name: Samantha" in system_prompt(s.model.requests[1])  # the next step
    assert [m.role for m in messages] == ["user", "assistant", "tool", "assistant"]

    s.run({"input": "Who am I?"})
    assert "Name: Samantha" in system_prompt(s.model.requests[2])  # the next request
    agent = s.client.agents.retrieve(s.agent.id)
    assert agent.memory.blocks[0].value == "Name: Samantha"


def test_given_a_tool_error_then_the_model_sees_it_and_the_block_is_unchanged(scenario):
    s = scenario(tools=["core_memory_replace"], replies=[
        tool_call("core_memory_replace", label="human", old_content="Bob", new_content="Alice"), Reply(text="Oops.")])
    _, [item], messages = s.run({"input": "rename"})
    assert item["stop_reason"] == "end_turn"
    assert messages[2].tool_returns[0].status == "error"
    tool_turn = s.model.requests[1]["messages"][-1]
    assert tool_turn["role"] == "tool" and "not found in memory block 'human'" in tool_turn["content"]
    assert s.client.agents.retrieve(s.agent.id).memory.blocks[0].value == "Name: Sam"


def _paused(scenario):
    s = scenario(tools=["core_memory_append"],
                 tool_rules=[{"type": "requires_approval", "tool_name": "core_memory_append"}],
                 replies=[tool_call("core_memory_append", label="human", content="Likes tea."),
                          Reply(text="Done.")])
    _, [item], messages = s.run({"input": "Remember that I like tea."})
    assert item["stop_reason"] == "requires_approval"
    [request] = [m for m in messages if m.role == "approval"]
    return s, request.tool_calls[0].id


def test_given_a_paused_request_when_the_client_approves_in_a_new_batch_then_the_tool_runs_and_the_run_ends(scenario):
    s, call_id = _paused(scenario)
    assert s.client.agents.retrieve(s.agent.id).memory.blocks[0].value == "Name: Sam"
    batch, [item], messages = s.run({"messages": [
        {"type": "approval", "approvals": [{"type": "approval", "tool_call_id": call_id, "approve": True}]}]})
    assert (item["status"], item["stop_reason"]) == ("succeeded", "end_turn")
    assert (batch.status, batch.stop_reason) == ("completed", "end_turn")
    assert [m.role for m in messages] == ["approval", "tool", "assistant"]
    assert messages[0].approvals[0].approve is True
    assert s.client.agents.retrieve(s.agent.id).memory.blocks[0].value == "Name: Sam\nLikes tea."
    resumed = s.model.requests[1]["messages"]
    assert resumed[-2]["tool_calls"][0]["id"] == call_id and resumed[-1]["tool_call_id"] == call_id


def test_given_a_paused_request_when_the_client_denies_through_the_sdk_then_the_model_sees_the_reason(scenario):
    s, call_id = _paused(scenario)
    response = s.client.agents.messages.create(s.agent.id, messages=[
        {"type": "approval", "approvals": [{"type": "approval", "tool_call_id": call_id, "approve": False,
                                            "reason": "I never said that"}]}])
    assert response.stop_reason.stop_reason == "end_turn"
    denial = s.model.requests[1]["messages"][-1]
    assert denial["role"] == "tool" and denial["tool_call_id"] == call_id
    assert "denied" in denial["content"] and "I never said that" in denial["content"]
    assert s.client.agents.retrieve(s.agent.id).memory.blocks[0].value == "Name: Sam"


def test_given_a_paused_client_tool_when_the_client_sends_its_result_then_the_model_reads_it(scenario):
    s = scenario(replies=[tool_call("get_weather", city="Paris"), Reply(text="It is sunny in Paris.")])
    _, [item], messages = s.run({"input": "weather?", "client_tools": [{"name": "get_weather"}]})
    assert item["stop_reason"] == "requires_approval"
    call_id = messages[-1].tool_calls[0].id
    response = s.client.agents.messages.create(s.agent.id, messages=[
        {"type": "approval", "approvals": [{"type": "tool", "tool_call_id": call_id, "tool_return": "sunny, 21C",
                                            "status": "success"}]}])
    assert response.stop_reason.stop_reason == "end_turn"
    assert [m.message_type for m in response.messages] == ["approval_response_message", "tool_return_message",
                                                           "assistant_message"]
    assert s.model.requests[1]["messages"][-1]["content"] == "sunny, 21C"


def test_given_an_approval_with_nothing_pending_when_sent_synchronously_then_409(scenario):
    s = scenario()
    try:
        s.client.agents.messages.create(s.agent.id, messages=[
            {"type": "approval", "approvals": [{"type": "approval", "tool_call_id": "call_x", "approve": True}]}])
        raise AssertionError("expected a conflict")
    except letta_client.ConflictError as error:
        assert "awaiting approval" in str(error)


def test_given_every_kind_of_message_when_listed_with_the_sdk_then_each_parses_as_its_type(scenario):
    s = scenario(tools=["conversation_search", "core_memory_append"],
                 tool_rules=[{"type": "requires_approval", "tool_name": "core_memory_append"}],
                 replies=[Reply(text="", reasoning="Let me look first.",
                                tool_calls=[("conversation_search", json.dumps({"query": "tea"}))]),
                          tool_call("core_memory_append", label="human", content="Likes tea."),
                          Reply(text="Saved.")])
    _, _, messages = s.run({"input": "Remember tea."})
    call_id = messages[-1].tool_calls[0].id
    s.run({"messages": [{"type": "approval", "approve": True, "approval_request_id": messages[-1].id}]})
    listed = list(s.client.agents.messages.list(s.agent.id, order="asc", limit=3))
    kinds = {type(m) for m in listed}
    assert kinds == {UserMessage, ReasoningMessage, ToolCallMessage, ToolReturnMessage, ApprovalRequestMessage,
                     ApprovalResponseMessage, AssistantMessage}
    [approval_request] = [m for m in listed if isinstance(m, ApprovalRequestMessage)]
    assert approval_request.tool_call.tool_call_id == call_id
    assert approval_request.tool_call.name == "core_memory_append"
    [reasoning] = [m for m in listed if isinstance(m, ReasoningMessage)]
    assert reasoning.reasoning == "Let me look first."
    assert [m.content for m in listed if isinstance(m, AssistantMessage)] == ["Saved."]


def test_given_a_send_message_agent_when_messaged_then_its_reply_shows_as_an_assistant_message(scenario):
    s = scenario(tools=["send_message"], replies=[tool_call("send_message", message="Hello through the tool!")] * 2)
    reply = s.client.agents.messages.create(s.agent.id, input="hi")
    assert reply.stop_reason.stop_reason == "end_turn"
    assert [(m.message_type, m.content) for m in reply.messages] == [("assistant_message", "Hello through the tool!")]
    raw = s.client.agents.messages.create(s.agent.id, input="again", use_assistant_message=False)
    assert [m.message_type for m in raw.messages] == ["tool_call_message", "tool_return_message"]


def test_given_an_anthropic_agent_with_a_tool_then_tool_use_and_tool_result_round_trip(shared_service):
    client = shared_service.client()
    with FakeAnthropicServer() as model:
        replies = [Reply(text="", reasoning="Search first.", tool_calls=[("conversation_search", '{"query": "hi"}')]),
                   Reply(text="Found nothing.")]
        model.script = lambda body, n: replies[n] if n < len(replies) else None
        agent = client.agents.create(model="anthropic/claude-sonnet-4", tools=["conversation_search"], llm_config={
            "model": "claude-sonnet-4", "model_endpoint_type": "anthropic", "model_endpoint": model.base_url,
            "context_window": 200000})
        batch = client.batches.create(requests=[{"agent_id": agent.id, "input": "hi"}])
        finished = wait_for_status(client, batch.id, timeout_s=30)
        assert (finished.status, finished.stop_reason) == ("completed", "end_turn")
        messages = list(client.batches.messages.list(batch.id, order="asc"))
        assert [m.role for m in messages] == ["user", "assistant", "tool", "assistant"]
        assert messages[1].content[0].type == "reasoning" and messages[1].content[0].reasoning == "Search first."
        assert model.requests[0]["tools"][0]["name"] == "conversation_search"
        second = model.requests[1]["messages"]
        assert second[1]["role"] == "assistant"
        assert any(block["type"] == "tool_use" for block in second[1]["content"])
        assert second[2]["role"] == "user" and second[2]["content"][0]["type"] == "tool_result"


def test_given_concurrent_requests_to_one_agent_when_each_edits_memory_then_no_edit_is_lost(scenario):
    s = scenario(tools=["core_memory_append"])

    def script(body, n):
        last = body["messages"][-1]
        if last["role"] == "tool":
            return Reply(text="Saved.", first_token_delay_s=0.3)
        return Reply(text="", tool_calls=[("core_memory_append", json.dumps(
            {"label": "human", "content": f"note: {last['content']}"}))])

    s.model.script = script
    batch, items, _ = s.run(*({"input": f"fact {i}"} for i in range(6)))
    assert batch.status == "completed" and {item["stop_reason"] for item in items} == {"end_turn"}
    assert s.model.max_open_streams >= 2  # they really ran at the same time
    value = s.client.agents.retrieve(s.agent.id).memory.blocks[0].value
    assert sorted(value.split("\n")[1:]) == [f"note: fact {i}" for i in range(6)]


def test_given_concurrent_requests_making_the_same_edits_when_all_commit_then_each_edit_is_made_once(scenario):
    s = scenario(tools=["core_memory_replace"], memory_blocks=[{"label": "human", "value": "Name: Sam\nlikes tea"}])
    edits = {"rename": {"old_content": "Sam", "new_content": "Samantha"},
             "coffee": {"old_content": "likes tea", "new_content": "likes tea and coffee"}}

    def script(body, n):
        last = body["messages"][-1]
        if last["role"] == "tool":  # slow, so every run has read the block before any commits
            return Reply(text="Done.", first_token_delay_s=1.0)
        return Reply(text="", tool_calls=[("core_memory_replace", json.dumps(
            {"label": "human", **edits[last["content"]]}))])

    s.model.script = script
    batch, items, _ = s.run(*({"input": kind} for kind in ["rename"] * 3 + ["coffee"] * 2))
    assert batch.status == "completed" and {item["stop_reason"] for item in items} == {"end_turn"}
    first_calls = [body for body in s.model.requests if body["messages"][-1]["role"] == "user"]
    read_original = [body["messages"][-1]["content"] for body in first_calls
                     if "Name: Sam\nlikes tea\n" in system_prompt(body)]
    assert read_original.count("rename") >= 2 and read_original.count("coffee") == 2  # they really overlapped
    assert s.client.agents.retrieve(s.agent.id).memory.blocks[0].value == "Name: Samantha\nlikes tea and coffee"


def test_given_one_paused_call_when_two_requests_of_a_batch_approve_it_at_once_then_it_runs_once(scenario):
    s, call_id = _paused(scenario)
    s.model.script = lambda body, n: Reply(text="Done.", first_token_delay_s=1.0)
    approve = {"messages": [{"type": "approval", "approvals": [
        {"type": "approval", "tool_call_id": call_id, "approve": True}]}]}
    batch, items, messages = s.run(approve, approve)
    assert s.model.max_open_streams == 2  # both approvals ran the tool and reached the model
    assert s.client.agents.retrieve(s.agent.id).memory.blocks[0].value == "Name: Sam\nLikes tea."
    assert [m.role for m in messages] == ["approval", "tool", "assistant"]
    assert sorted((item["status"], item["error"]) for item in items) == [
        ("errored", "This approval was already answered by another request; this answer was not applied."),
        ("succeeded", None)]
    assert batch.status == "completed"
    history = list(s.client.agents.messages.list(s.agent.id, order="asc"))
    assert [m.message_type for m in history].count("approval_response_message") == 1
