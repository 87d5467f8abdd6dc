"""The agent routes over a real Redis, and the synchronous run through real local model servers."""

from __future__ import annotations

import pytest

from tests.fakes.model_servers import FakeAnthropicServer, FakeOpenAIServer, Reply


def _create(client, **body):
    return client.post("/v1/agents/", json={"model": "simulated/echo", **body})


def test_given_a_create_agent_body_when_posted_then_the_agent_state_has_the_letta_fields(client):
    response = _create(client, name="helper", system="Be brief.", tags=["a"], metadata={"k": 1},
                       memory_blocks=[{"label": "persona", "value": "I am terse.", "limit": 100}])
    assert response.status_code == 200
    agent = response.get_json()
    assert agent["id"].startswith("agent-") and agent["agent_type"] == "letta_v1_agent"
    assert agent["name"] == "helper" and agent["system"] == "Be brief." and agent["model"] == "simulated/echo"
    assert agent["llm_config"] == {"model": "echo", "model_endpoint_type": "simulated", "context_window": 128000}
    assert agent["blocks"][0]["label"] == "persona" and agent["memory"]["blocks"] == agent["blocks"]
    assert agent["sources"] == [] and agent["tags"] == ["a"] and agent["metadata"] == {"k": 1}
    assert agent["message_ids"] == [] and agent["created_at"].endswith("Z")
    assert client.get(f"/v1/agents/{agent['id']}").get_json()["name"] == "helper"


def test_given_an_llm_config_only_when_created_then_the_model_handle_comes_from_it(client):
    agent = client.post("/v1/agents", json={"llm_config": {
        "model": "gpt-4o-mini", "model_endpoint_type": "openai", "model_endpoint": "http://127.0.0.1:1/v1",
        "context_window": 8000}}).get_json()
    assert agent["model"] == "openai/gpt-4o-mini"
    assert agent["llm_config"]["model_endpoint"] == "http://127.0.0.1:1/v1"


@pytest.mark.parametrize(("body", "field"), [
    ({"model": "mystery/x"}, "model"),
    ({"model": "nohandle"}, "model"),
    ({}, "body"),
    ({"model": "simulated/echo", "memory_blocks": [{"label": "a", "value": "x" * 11, "limit": 10}]}, "memory_blocks"),
    ({"model": "simulated/echo", "memory_blocks": [{"label": "a"}, {"label": "a"}]}, "unique"),
    ({"model": None, "llm_config": {"model": "", "model_endpoint_type": "openai"}}, "llm_config.model"),
])
def test_given_an_invalid_agent_when_created_then_422_says_what_is_wrong(client, body, field):
    response = client.post("/v1/agents/", json=body)
    assert response.status_code == 422
    assert field in response.get_json()["detail"]


def test_given_agents_when_listed_by_name_and_paged_then_each_comes_once(client):
    ids = [_create(client, name=f"n{i % 2}").get_json()["id"] for i in range(5)]
    paged, after = [], None
    while page := client.get("/v1/agents/", query_string={"limit": 2, "order": "asc",
                                                         **({"after": after} if after else {})}).get_json():
        paged += [agent["id"] for agent in page]
        after = page[-1]["id"]
    assert paged == ids
    named = client.get("/v1/agents", query_string={"name": "n1", "limit": 1, "order": "asc"}).get_json()
    assert [agent["id"] for agent in named] == [ids[1]]
    # walking back from the last agent, with a name filter spanning several pages, in order
    back = client.get("/v1/agents", query_string={"name": "n0", "before": ids[4], "limit": 2, "order": "asc"})
    assert [agent["id"] for agent in back.get_json()] == [ids[0], ids[2]]


def test_given_an_agent_when_deleted_then_it_is_gone_and_a_second_delete_is_404(client):
    agent_id = _create(client).get_json()["id"]
    deleted = client.delete(f"/v1/agents/{agent_id}").get_json()
    assert deleted == {"message": f"Agent id={agent_id} successfully deleted"}
    assert client.get(f"/v1/agents/{agent_id}").status_code == 404
    assert client.delete(f"/v1/agents/{agent_id}").status_code == 404


def test_given_a_simulated_agent_when_messaged_then_it_echoes_and_the_history_holds_both_messages(client):
    agent_id = _create(client).get_json()["id"]
    response = client.post(f"/v1/agents/{agent_id}/messages",
                           json={"messages": [{"role": "user", "content": "hello there"}]})
    assert response.status_code == 200
    body = response.get_json()
    assert [m["message_type"] for m in body["messages"]] == ["assistant_message"]
    assert body["messages"][0]["content"] == "echo: hello there"
    assert body["stop_reason"] == {"message_type": "stop_reason", "stop_reason": "end_turn"}
    history = client.get(f"/v1/agents/{agent_id}/messages", query_string={"order": "asc"}).get_json()
    assert [(m["message_type"], m["content"]) for m in history] == [
        ("user_message", "hello there"), ("assistant_message", "echo: hello there")]
    assert len(client.get(f"/v1/agents/{agent_id}").get_json()["message_ids"]) == 2


def test_given_an_openai_agent_when_messaged_twice_then_the_second_call_carries_blocks_and_history(client):
    with FakeOpenAIServer() as model:
        agent_id = client.post("/v1/agents", json={
            "model": "openai/gpt-4o-mini", "system": "You help.",
            "llm_config": {"model": "gpt-4o-mini", "model_endpoint_type": "openai", "model_endpoint": model.base_url},
            "memory_blocks": [{"label": "human", "value": "Name: Ada"}]}).get_json()["id"]
        client.post(f"/v1/agents/{agent_id}/messages", json={"input": "first"})
        client.post(f"/v1/agents/{agent_id}/messages", json={"input": "second"})
        sent = model.requests[1]
        assert sent["model"] == "gpt-4o-mini" and sent["stream"] is True
        assert sent["messages"][0]["role"] == "system"
        assert sent["messages"][0]["content"].startswith("You help.") and "Name: Ada" in sent["messages"][0]["content"]
        assert [(m["role"], m["content"]) for m in sent["messages"][1:]] == [
            ("user", "first"), ("assistant", "Hello from the fake model."), ("user", "second")]


def test_given_an_anthropic_agent_when_messaged_then_the_messages_api_is_streamed(client):
    with FakeAnthropicServer(reply=Reply(text="Bonjour.")) as model:
        agent_id = client.post("/v1/agents", json={
            "model": "anthropic/claude-sonnet-4", "llm_config": {
                "model": "claude-sonnet-4", "model_endpoint_type": "anthropic", "model_endpoint": model.base_url,
                "max_tokens": 512}}).get_json()["id"]
        body = client.post(f"/v1/agents/{agent_id}/messages", json={"input": "Salut"}).get_json()
        assert body["messages"][0]["content"] == "Bonjour."
        sent = model.requests[0]
        assert sent["model"] == "claude-sonnet-4" and sent["max_tokens"] == 512 and sent["stream"] is True
        assert sent["messages"] == [{"role": "user", "content": [{"type": "text", "text": "Salut"}]}] or \
            sent["messages"] == [{"role": "user", "content": "Salut"}]


def test_given_a_provider_that_fails_when_messaged_then_the_answer_says_llm_api_error(client):
    with FakeOpenAIServer(reply=Reply(status=401, error_message="Incorrect API key provided")) as model:
        agent_id = client.post("/v1/agents", json={"llm_config": {
            "model": "gpt-4o", "model_endpoint_type": "openai", "model_endpoint": model.base_url}}).get_json()["id"]
        response = client.post(f"/v1/agents/{agent_id}/messages", json={"input": "hi"})
        assert response.status_code == 200
        assert response.get_json()["stop_reason"]["stop_reason"] == "llm_api_error"
        assert len(model.requests) == 1  # 401 is not retried


def test_given_an_unknown_agent_when_messaged_then_404(client):
    response = client.post("/v1/agents/agent-nope/messages", json={"input": "hi"})
    assert response.status_code == 404 and "agent-nope" in response.get_json()["detail"]


@pytest.mark.parametrize(("body", "detail"), [
    ({"tools": ["send_message", "rm_rf"]}, "tools: Value error, item 1 is not a built-in tool"),
    ({"tools": ["send_message"], "tool_rules": [{"type": "exit_loop", "tool_name": "conversation_search"}]},
     "not one of the agent's tools"),
    ({"tools": ["send_message"], "tool_rules": [{"type": "teleport", "tool_name": "send_message"}]}, "tool_rules.0"),
    ({"tools": ["send_message"], "tool_rules": [{"type": "max_count_per_step", "tool_name": "send_message"}]},
     "max_count_limit"),
])
def test_given_unknown_tools_or_bad_tool_rules_when_creating_an_agent_then_422(client, body, detail):
    response = _create(client, **body)
    assert response.status_code == 422
    assert detail in response.get_json()["detail"]


def test_given_tools_and_rules_when_created_then_the_agent_state_lists_them(client):
    agent = _create(client, tools=["send_message", "core_memory_append"],
                    tool_rules=[{"type": "exit_loop", "tool_name": "send_message"}]).get_json()
    assert [tool["name"] for tool in agent["tools"]] == ["send_message", "core_memory_append"]
    assert agent["tool_rules"] == [{"type": "exit_loop", "tool_name": "send_message"}]


def test_given_a_pending_approval_when_an_ordinary_message_is_sent_synchronously_then_409(client):
    with FakeOpenAIServer(reply=Reply(text="", tool_calls=[("get_weather", "{}")])) as model:
        agent_id = client.post("/v1/agents", json={"llm_config": {
            "model": "m", "model_endpoint_type": "openai", "model_endpoint": model.base_url}}).get_json()["id"]
        paused = client.post(f"/v1/agents/{agent_id}/messages",
                             json={"input": "weather?", "client_tools": [{"name": "get_weather"}]}).get_json()
        assert paused["stop_reason"]["stop_reason"] == "requires_approval"
        assert paused["messages"][-1]["message_type"] == "approval_request_message"
        response = client.post(f"/v1/agents/{agent_id}/messages", json={"input": "hello?"})
        assert response.status_code == 409 and "waiting for approval of get_weather" in response.get_json()["detail"]
        wrong = client.post(f"/v1/agents/{agent_id}/messages", json={"messages": [
            {"type": "approval", "approvals": [{"tool_call_id": "call_other", "approve": True}]}]})
        assert wrong.status_code == 409 and "exactly the pending tool call" in wrong.get_json()["detail"]
        assert len(model.requests) == 1


def test_given_a_paused_client_tool_when_its_result_comes_as_a_tool_return_message_then_the_run_continues(client):
    replies = [Reply(text="", tool_calls=[("get_weather", '{"city": "Oslo"}')]), Reply(text="Cold in Oslo.")]
    with FakeOpenAIServer() as model:
        model.script = lambda body, n: replies[n] if n < len(replies) else None
        agent_id = client.post("/v1/agents", json={"llm_config": {
            "model": "m", "model_endpoint_type": "openai", "model_endpoint": model.base_url}}).get_json()["id"]
        paused = client.post(f"/v1/agents/{agent_id}/messages",
                             json={"input": "weather?", "client_tools": [{"name": "get_weather"}]}).get_json()
        call_id = paused["messages"][-1]["tool_call"]["tool_call_id"]
        resumed = client.post(f"/v1/agents/{agent_id}/messages", json={"messages": [
            {"type": "tool_return", "tool_returns": [{"tool_call_id": call_id, "tool_return": "-5C",
                                                      "status": "success"}]}]}).get_json()
        assert resumed["stop_reason"]["stop_reason"] == "end_turn"
        assert resumed["messages"][-1]["content"] == "Cold in Oslo."
        assert model.requests[1]["messages"][-1] == {"role": "tool", "tool_call_id": call_id, "content": "-5C"}
