"""Every field a client sends is bounded (app/schemas/limits.py): past its bound it is a 422 that
names the field and never repeats what was sent. Real Redis, Flask's test client."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from app.schemas import limits
from app.store import keys

#: What each oversized value is made of; no answer may contain it.
MARK = "ZQXJ-never-echo-me-"
#: Replaced by a real agent id in each batch body.
AGENT = "AGENT_ID"


def long(chars: int) -> str:
    """A recognisable string of exactly `chars` characters."""
    return (MARK * (chars // len(MARK) + 1))[:chars]


def over(bound: int) -> str:
    return long(bound + 1)


def _agent(**fields: Any) -> dict[str, Any]:
    return {"model": "openai/gpt-4o-mini", **fields}


def _request(**fields: Any) -> dict[str, Any]:
    return {"requests": [{"agent_id": AGENT, **({"input": "hi"} if "messages" not in fields else {}), **fields}]}


def _message(**fields: Any) -> dict[str, Any]:
    return _request(messages=[{"role": "user", "content": "hi", **fields}])


def _tool_return(**fields: Any) -> dict[str, Any]:
    item = {"tool_call_id": "call-1", "tool_return": "ok", **fields}
    return _request(messages=[{"type": "tool_return", "tool_returns": [item]}])


def _approval(**fields: Any) -> dict[str, Any]:
    return _request(messages=[{"type": "approval", "approve": True, **fields}])


def _image(**source: Any) -> dict[str, Any]:
    return _request(input=[{"type": "image", "source": source}])


def _block(**fields: Any) -> dict[str, Any]:
    return _agent(memory_blocks=[{"label": "human", **fields}])


def _rules(*rules: dict[str, Any]) -> dict[str, Any]:
    return _agent(tools=["send_message"], tool_rules=list(rules))


def _keys(count: int) -> dict[str, str]:
    return {f"{MARK}{index}": "v" for index in range(count)}


TOOL = {"name": "lookup"}
AGENT_BODIES: list[tuple[str, dict[str, Any], list[str | int]]] = [
    ("name", _agent(name=over(limits.MAX_NAME_CHARS)), ["name"]),
    ("system", _agent(system=over(limits.MAX_TEXT_CHARS)), ["system"]),
    ("description", _agent(description=over(limits.MAX_DESCRIPTION_CHARS)), ["description"]),
    ("model-too-long", _agent(model="openai/" + over(limits.MAX_NAME_CHARS)), ["model"]),
    ("model-unknown-provider", _agent(model=MARK + "/x"), ["model"]),
    ("llm-config-model", {"llm_config": {"model": over(limits.MAX_NAME_CHARS), "model_endpoint_type": "openai"}},
     ["llm_config", "model"]),
    ("llm-config-provider", {"llm_config": {"model": "m", "model_endpoint_type": MARK}},
     ["llm_config", "model_endpoint_type"]),
    ("llm-config-endpoint", {"llm_config": {"model": "m", "model_endpoint_type": "openai",
                                            "model_endpoint": "https://x/" + over(limits.MAX_URL_CHARS)}},
     ["llm_config", "model_endpoint"]),
    ("memory-blocks", _agent(memory_blocks=[{"label": f"b{index}"} for index in range(limits.MAX_MEMORY_BLOCKS + 1)]),
     ["memory_blocks"]),
    ("block-label", _block(label=over(limits.MAX_LABEL_CHARS)), ["memory_blocks", 0, "label"]),
    ("block-limit", _block(limit=limits.MAX_BLOCK_CHARS + 1), ["memory_blocks", 0, "limit"]),
    ("block-value", _block(value=over(limits.MAX_BLOCK_CHARS), limit=limits.MAX_BLOCK_CHARS),
     ["memory_blocks", 0, "value"]),
    ("block-value-over-its-limit", _agent(memory_blocks=[{"label": MARK, "value": "abc", "limit": 2}]),
     ["memory_blocks", 0]),
    ("block-description", _block(description=over(limits.MAX_DESCRIPTION_CHARS)), ["memory_blocks", 0, "description"]),
    ("tools", _agent(tools=["send_message"] * (limits.MAX_TOOLS + 1)), ["tools"]),
    ("tool-unknown", _agent(tools=[MARK]), ["tools"]),
    ("tool-name", _agent(tools=[over(limits.MAX_LABEL_CHARS)]), ["tools", 0]),
    ("tool-rules", _rules(*[{"type": "continue_loop", "tool_name": "send_message"}] * (limits.MAX_TOOLS + 1)),
     ["tool_rules"]),
    ("tool-rule-type", _rules({"type": MARK, "tool_name": "send_message"}), ["tool_rules", 0]),
    ("tool-rule-tool", _rules({"type": "exit_loop", "tool_name": MARK}), []),
    ("tool-rule-tool-name", _rules({"type": "exit_loop", "tool_name": over(limits.MAX_LABEL_CHARS)}),
     ["tool_rules", 0, "exit_loop", "tool_name"]),
    ("tool-rule-template", _rules({"type": "exit_loop", "tool_name": "send_message",
                                   "prompt_template": over(limits.MAX_DESCRIPTION_CHARS)}),
     ["tool_rules", 0, "exit_loop", "prompt_template"]),
    ("tool-rule-children", _rules({"type": "constrain_child_tools", "tool_name": "send_message",
                                   "children": ["send_message"] * (limits.MAX_TOOLS + 1)}),
     ["tool_rules", 0, "constrain_child_tools", "children"]),
    ("tags", _agent(tags=["t"] * (limits.MAX_TAGS + 1)), ["tags"]),
    ("tag", _agent(tags=[over(limits.MAX_LABEL_CHARS)]), ["tags", 0]),
    ("metadata-keys", _agent(metadata=_keys(limits.MAX_METADATA_KEYS + 1)), ["metadata"]),
    ("metadata-key", _agent(metadata={over(limits.MAX_METADATA_KEY_CHARS): 1}), ["metadata"]),
    ("metadata-size", _agent(metadata={"k": over(limits.MAX_METADATA_BYTES)}), ["metadata"]),
]
BATCH_BODIES: list[tuple[str, dict[str, Any], list[str | int]]] = [
    ("agent-id", {"requests": [{"agent_id": over(limits.MAX_ID_CHARS), "input": "hi"}]},
     ["requests", 0, "agent_id"]),
    ("metadata-keys", {**_request(), "metadata": _keys(limits.MAX_METADATA_KEYS + 1)}, ["metadata"]),
    ("metadata-key", {**_request(), "metadata": {over(limits.MAX_METADATA_KEY_CHARS): 1}}, ["metadata"]),
    ("metadata-size", {**_request(), "metadata": {"k": [over(1000)] * (limits.MAX_METADATA_BYTES // 1000 + 1)}},
     ["metadata"]),
    ("messages", _request(messages=[{"role": "user", "content": MARK}] * (limits.MAX_MESSAGES_PER_REQUEST + 1)),
     ["requests", 0, "messages"]),
    ("content-parts", _request(input=[{"type": "text", "text": MARK}] * (limits.MAX_CONTENT_PARTS + 1)),
     ["requests", 0, "input"]),
    ("message-name", _message(name=over(limits.MAX_NAME_CHARS)), ["requests", 0, "messages", 0, "name"]),
    ("message-otid", _message(otid=over(limits.MAX_ID_CHARS)), ["requests", 0, "messages", 0, "otid"]),
    ("message-sender", _message(sender_id=over(limits.MAX_ID_CHARS)), ["requests", 0, "messages", 0, "sender_id"]),
    ("client-tools", _request(client_tools=[TOOL] * (limits.MAX_TOOLS + 1)), ["requests", 0, "client_tools"]),
    ("client-tool-description", _request(client_tools=[{**TOOL, "description": over(limits.MAX_DESCRIPTION_CHARS)}]),
     ["requests", 0, "client_tools", 0, "description"]),
    ("client-tool-schema", _request(client_tools=[{**TOOL, "parameters": {
        "type": "object", "description": over(limits.MAX_TOOL_SCHEMA_BYTES)}}]),
     ["requests", 0, "client_tools", 0, "parameters"]),
    ("return-types", _request(include_return_message_types=["assistant_message"] * (limits.MAX_TAGS + 1)),
     ["requests", 0, "include_return_message_types"]),
    ("tool-name-option", _request(assistant_message_tool_name=over(limits.MAX_LABEL_CHARS)),
     ["requests", 0, "assistant_message_tool_name"]),
    ("enable-thinking", _request(enable_thinking=over(limits.MAX_LABEL_CHARS)), ["requests", 0, "enable_thinking"]),
    ("tool-returns", _request(messages=[{"type": "tool_return", "tool_returns": [
        {"tool_call_id": "c", "tool_return": MARK}] * (limits.MAX_TOOLS + 1)}]),
     ["requests", 0, "messages", 0, "tool_returns"]),
    ("tool-return-call-id", _tool_return(tool_call_id=over(limits.MAX_ID_CHARS)),
     ["requests", 0, "messages", 0, "tool_returns", 0, "tool_call_id"]),
    ("tool-return-stdout", _tool_return(stdout=[MARK] * (limits.MAX_OUTPUT_LINES + 1)),
     ["requests", 0, "messages", 0, "tool_returns", 0, "stdout"]),
    ("approvals", _request(messages=[{"type": "approval", "approvals": [
        {"tool_call_id": MARK, "approve": True}] * (limits.MAX_TOOLS + 1)}]),
     ["requests", 0, "messages", 0, "approvals"]),
    ("approval-reason", _approval(reason=over(limits.MAX_DESCRIPTION_CHARS)),
     ["requests", 0, "messages", 0, "reason"]),
    ("approval-request-id", _approval(approval_request_id=over(limits.MAX_ID_CHARS)),
     ["requests", 0, "messages", 0, "approval_request_id"]),
    ("image-data", _image(type="base64", media_type="image/png", data="QUFB" * (limits.MAX_IMAGE_DATA_CHARS // 4 + 1)),
     ["requests", 0, "input", 0, "source", "data"]),
    ("image-media-type", _image(type="base64", media_type="image/" + over(limits.MAX_LABEL_CHARS), data="QUFB"),
     ["requests", 0, "input", 0, "source", "media_type"]),
    ("letta-file-id", _image(type="letta", file_id=over(limits.MAX_ID_CHARS), media_type="image/png", data="QUFB"),
     ["requests", 0, "input", 0, "source", "file_id"]),
]
QUERIES: list[tuple[str, Callable[[dict[str, str]], str], dict[str, Any], list[str | int]]] = [
    ("agents-name", lambda ids: "/v1/agents/", {"name": over(limits.MAX_NAME_CHARS)}, ["name"]),
    ("agents-after", lambda ids: "/v1/agents/", {"after": over(limits.MAX_ID_CHARS)}, ["after"]),
    ("batches-before", lambda ids: "/v1/messages/batches", {"before": over(limits.MAX_ID_CHARS)}, ["before"]),
    ("batch-messages-agent", lambda ids: f"/v1/messages/batches/{ids['batch']}/messages",
     {"agent_id": over(limits.MAX_ID_CHARS)}, ["agent_id"]),
    ("history-tool-name", lambda ids: f"/v1/agents/{ids['agent']}/messages",
     {"assistant_message_tool_kwarg": over(limits.MAX_LABEL_CHARS)}, ["assistant_message_tool_kwarg"]),
    ("batch-path", lambda ids: f"/v1/messages/batches/{over(limits.MAX_ID_CHARS)}", {}, ["batch_id"]),
    ("agent-path", lambda ids: f"/v1/agents/{over(limits.MAX_ID_CHARS)}", {}, ["agent_id"]),
]


@pytest.fixture
def ids(client) -> dict[str, str]:
    agent = client.post("/v1/agents/", json={"model": "simulated/echo"}).get_json()["id"]
    batch = client.post("/v1/messages/batches", json={"requests": [{"agent_id": agent, "input": "hi"}]}).get_json()
    return {"agent": agent, "batch": batch["id"]}


def _refused_without_echo(response: Any, loc: list[str | int]) -> None:
    text = response.get_data(as_text=True)
    assert response.status_code == 422, text[:500]
    assert MARK not in text, "the answer repeats what the client sent"
    answer = response.get_json()
    if loc:  # the field, or a member of its union type
        assert any(error["loc"][:len(loc)] == loc for error in answer["errors"]), answer
    assert answer["detail"].startswith("Invalid request: ")


@pytest.mark.parametrize(("body", "loc"), [case[1:] for case in AGENT_BODIES], ids=[case[0] for case in AGENT_BODIES])
def test_given_an_agent_field_past_its_bound_when_created_then_422_names_it_without_echoing_it(
        app, client, body, loc):
    _refused_without_echo(client.post("/v1/agents/", json=body), loc)
    assert app.extensions["batchline"].store.client.zcard(keys.AGENTS) == 0


@pytest.mark.parametrize(("body", "loc"), [case[1:] for case in BATCH_BODIES], ids=[case[0] for case in BATCH_BODIES])
def test_given_a_batch_field_past_its_bound_when_posted_then_422_names_it_without_echoing_it(
        app, client, ids, body, loc):
    body["requests"][0]["agent_id"] = body["requests"][0]["agent_id"].replace(AGENT, ids["agent"])
    _refused_without_echo(client.post("/v1/messages/batches", json=body), loc)
    assert app.extensions["batchline"].store.client.zcard(keys.BATCHES) == 1  # the fixture's only


@pytest.mark.parametrize(("route", "query", "loc"), [case[1:] for case in QUERIES], ids=[case[0] for case in QUERIES])
def test_given_a_query_or_path_past_its_bound_when_read_then_422_names_it_without_echoing_it(
        client, ids, route, query, loc):
    _refused_without_echo(client.get(route(ids), query_string=query), loc)


def test_given_every_field_at_its_bound_when_an_agent_and_a_batch_are_posted_then_both_are_accepted(client):
    agent = client.post("/v1/agents/", json=_agent(
        name=long(limits.MAX_NAME_CHARS), tags=[long(limits.MAX_LABEL_CHARS)] * limits.MAX_TAGS,
        metadata={long(limits.MAX_METADATA_KEY_CHARS - 3) + f"{index:03}": index
                  for index in range(limits.MAX_METADATA_KEYS)},
        memory_blocks=[{"label": f"b{index}", "value": "v"} for index in range(limits.MAX_MEMORY_BLOCKS)]))
    assert agent.status_code == 200, agent.get_data(as_text=True)[:500]
    batch = client.post("/v1/messages/batches", json={
        "requests": [{"agent_id": agent.get_json()["id"],
                      "messages": [{"role": "user", "content": "hi"}] * limits.MAX_MESSAGES_PER_REQUEST}],
        "metadata": {"k": long(limits.MAX_METADATA_BYTES - len('{"k":""}'))}})
    assert batch.status_code == 200, batch.get_data(as_text=True)[:500]
