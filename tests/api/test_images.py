"""Images in message content: refused at the API when malformed, else sent to the model (real
Redis, Flask's test client, local fake model servers)."""

from __future__ import annotations

import pytest

from app.store import keys
from tests.fakes.model_servers import FakeAnthropicServer, FakeOpenAIServer

PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAQAAAC1HAwCAAAAC0lEQVR42mNkYAAAAAYAAjCB0C8AAAAASUVORK5CYII="
BASE64 = {"type": "base64", "media_type": "image/png", "data": PNG}
URL = {"type": "url", "url": "https://example.com/cat.jpg"}


def _image(source):
    return {"type": "image", "source": source}


def _agent(client, model, kind="openai"):
    return client.post("/v1/agents", json={"llm_config": {
        "model": "m", "model_endpoint_type": kind, "model_endpoint": model.base_url}}).get_json()["id"]


@pytest.mark.parametrize(("source", "field", "secret"), [
    ({"type": "file", "path": "/etc/passwd"}, "source", "/etc/passwd"),
    ("just-a-string", "source", "just-a-string"),
    ({"type": "base64", "media_type": "image/png"}, "source.data", None),
    ({"type": "url"}, "source.url", None),
    ({"type": "base64", "media_type": "text/html", "data": PNG}, "source.media_type", "text/html"),
    ({"type": "base64", "media_type": "image/png", "data": "not base64!"}, "source.data", "not base64!"),
    ({"type": "base64", "media_type": "image/png", "data": PNG[:-1]}, "source.data", None),
    ({"type": "url", "url": "file:///etc/passwd"}, "source.url", "file:///etc/passwd"),
    ({"type": "url", "url": f"data:image/png;base64,{PNG}"}, "source.url", PNG),
    ({"type": "letta", "file_id": "file-123"}, "source", "file-123"),
    ({"type": "url", "url": "https://example.com/a.png", "detail": "ultra"}, "source.detail", "ultra"),
])
def test_given_a_malformed_image_source_when_a_batch_is_posted_then_422_names_the_field_and_no_batch_exists(
        app, client, source, field, secret):
    agent_id = client.post("/v1/agents", json={"model": "simulated/echo"}).get_json()["id"]
    in_messages = {"messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}, _image(source)]}]}
    for request, prefix in (({"input": [_image(source)]}, "requests.0.input.0"),
                            (in_messages, "requests.0.messages.0.content.1")):
        response = client.post("/v1/messages/batches", json={"requests": [{"agent_id": agent_id, **request}]})
        assert response.status_code == 422
        payload = response.get_json()
        assert f"{prefix}.{field}" in [".".join(map(str, error["loc"])) for error in payload["errors"]]
        assert f"{prefix}.{field}:" in payload["detail"]
        if secret:
            assert secret not in str(payload)
    assert app.extensions["batchline"].store.client.zcard(keys.BATCHES) == 0


def test_given_an_image_in_an_assistant_message_when_posted_then_422_says_images_come_from_users_only(client):
    agent_id = client.post("/v1/agents", json={"model": "simulated/echo"}).get_json()["id"]
    response = client.post(f"/v1/agents/{agent_id}/messages", json={"messages": [
        {"role": "assistant", "content": [_image(URL)]}, {"role": "user", "content": "and?"}]})
    assert response.status_code == 422
    assert "messages.0.content: Value error, images are accepted in user and system messages only" in \
        response.get_json()["detail"]


def test_given_the_sdks_source_shapes_when_messaged_then_they_are_accepted_and_reach_openai_as_image_url_parts(client):
    without_type = {"media_type": "image/PNG", "data": PNG}  # the SDK leaves "type" optional
    letta_file = {"type": "letta", "file_id": "file-1", "media_type": "image/gif", "data": PNG}
    with FakeOpenAIServer() as model:
        agent_id = _agent(client, model)
        response = client.post(f"/v1/agents/{agent_id}/messages", json={"input": [
            {"type": "text", "text": "Which is bigger:"}, _image(without_type), {"type": "text", "text": "or"},
            _image({"url": URL["url"], "detail": "low"}), _image(letta_file)]})
        assert response.status_code == 200
        assert response.get_json()["stop_reason"]["stop_reason"] == "end_turn"
        assert model.requests[0]["messages"][-1] == {"role": "user", "content": [
            {"type": "text", "text": "Which is bigger:"},
            {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}},
            {"type": "text", "text": "or"},
            {"type": "image_url", "image_url": {"url": URL["url"], "detail": "low"}},
            {"type": "image_url", "image_url": {"url": f"data:image/gif;base64,{PNG}"}}]}


def test_given_images_when_an_anthropic_agent_is_messaged_twice_then_both_calls_carry_the_image_blocks(client):
    with FakeAnthropicServer() as model:
        agent_id = _agent(client, model, "anthropic")
        first = client.post(f"/v1/agents/{agent_id}/messages", json={"messages": [
            {"role": "user", "content": [_image(BASE64), {"type": "text", "text": "What is it?"}, _image(URL)]}]})
        assert first.status_code == 200
        client.post(f"/v1/agents/{agent_id}/messages", json={"input": "And its colour?"})
        expected = [{"type": "image", "source": BASE64}, {"type": "text", "text": "What is it?"},
                    {"type": "image", "source": URL}]
        assert model.requests[0]["messages"] == [{"role": "user", "content": expected}]
        # the image stays in the agent's history, so the next turn's call sends it again
        assert model.requests[1]["messages"][0] == {"role": "user", "content": expected}
        assert model.requests[1]["messages"][-1]["content"] == [{"type": "text", "text": "And its colour?"}]


def test_given_a_message_with_an_image_when_the_history_is_listed_then_the_user_message_shows_its_parts(client):
    agent_id = client.post("/v1/agents", json={"model": "simulated/echo"}).get_json()["id"]
    body = client.post(f"/v1/agents/{agent_id}/messages", json={"input": [{"type": "text", "text": "see"},
                                                                          _image(URL)]}).get_json()
    assert body["messages"][-1]["content"] == "echo: see [+1 image]"
    history = client.get(f"/v1/agents/{agent_id}/messages", query_string={"order": "asc"}).get_json()
    assert history[0]["message_type"] == "user_message"
    assert history[0]["content"] == [{"type": "text", "text": "see"}, {"type": "image", "source": URL}]
