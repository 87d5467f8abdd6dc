"""The whole service through the official SDK (letta-client 1.7.0): real web process, real
dramatiq worker, real redis-server, a local fake OpenAI streaming server and a callback receiver."""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections import Counter

import httpx
import redis
from letta_client import Letta

from tests.e2e.conftest import WEBHOOK_SECRET, wait_for_status, wait_until
from tests.fakes.model_servers import FakeOpenAIServer
from tests.support.queues import wait_for_idle_queues
from tests.support.receiver import CallbackReceiver

FIRST_TOKEN_DELAY_S = 0.4
REQUESTS = 60
#: A 1x1 PNG.
PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAQAAAC1HAwCAAAAC0lEQVR42mNkYAAAAAYAAjCB0C8AAAAASUVORK5CYII="


def _openai_agent(client, model_server, **extra):
    return client.agents.create(
        name="support-bot", model="openai/gpt-4o-mini",
        llm_config={"model": "gpt-4o-mini", "model_endpoint_type": "openai",
                    "model_endpoint": model_server.base_url, "context_window": 128000},
        memory_blocks=[{"label": "human", "value": "The user is called Sam."}], **extra)


def test_given_an_openai_agent_when_a_batch_runs_then_the_sdk_sees_it_complete_with_timings_messages_and_one_callback(
        start_service):
    with FakeOpenAIServer(first_token_delay_s=FIRST_TOKEN_DELAY_S, token_delay_s=0.01) as model, \
            CallbackReceiver() as receiver:
        service = start_service()
        client = service.client()
        agent = _openai_agent(client, model)

        batch = client.batches.create(
            requests=[{"agent_id": agent.id, "messages": [{"role": "user", "content": f"question {i}"}]}
                      for i in range(REQUESTS)],
            callback_url=receiver.url)
        assert batch.status == "running"  # from the moment create returns, as on Letta
        done = wait_for_status(client, batch.id, timeout_s=60)

        assert done.status == "completed"
        assert done.stop_reason == "end_turn"
        assert done.job_type == "batch"
        assert done.agent_id == agent.id
        assert done.callback_url == receiver.url
        assert done.completed_at is not None and done.completed_at >= done.created_at
        assert done.ttft_ns >= FIRST_TOKEN_DELAY_S * 1e9
        assert done.total_duration_ns >= done.ttft_ns
        assert done.metadata["job_type"] == "batch_messages"
        assert done.request_counts == {"total": REQUESTS, "pending": 0, "running": 0, "succeeded": REQUESTS,
                                       "errored": 0, "cancelled": 0, "expired": 0}
        assert wait_until(lambda: client.batches.retrieve(batch.id).callback_status_code == 200, timeout_s=10)
        done = client.batches.retrieve(batch.id)
        assert done.callback_sent_at is not None and done.callback_error is None

        # every request's input and answer exactly once, with its batch item and agent
        messages = list(client.batches.messages.list(batch.id, limit=25))
        assert len(messages) == 2 * REQUESTS
        assert len({message.id for message in messages}) == 2 * REQUESTS
        by_item = Counter((message.batch_item_id, message.role) for message in messages)
        assert len({item for item, _ in by_item}) == REQUESTS
        assert set(by_item.values()) == {1}
        assert all(message.agent_id == agent.id for message in messages)
        answers = [m for m in messages if m.role == "assistant"]
        assert all(m.content[0].text == "Hello from the fake model." for m in answers)
        assert len(model.requests) == REQUESTS
        assert "The user is called Sam." in model.requests[0]["messages"][0]["content"]

        # per-request view: timings of every item
        items = httpx.get(f"{service.base_url}/v1/messages/batches/{batch.id}/requests", headers=service.auth,
                          params={"limit": 1000}).json()
        assert len(items) == REQUESTS
        for item in items:
            assert item["status"] == "succeeded" and item["stop_reason"] == "end_turn"
            assert item["ttft_ns"] >= FIRST_TOKEN_DELAY_S * 1e9
            assert item["total_duration_ns"] >= item["ttft_ns"]
        # every item has ended: the request bodies are dropped, their place lists kept
        state = redis.Redis.from_url(service.env["REDIS_URL"])
        assert not state.keys(f"bl:batch:{batch.id}:requests:*[0-9]")
        assert state.keys(f"bl:batch:{batch.id}:requests:*:places")

        # the batch list pages through every batch, without repeats
        others = [client.batches.create(requests=[{"agent_id": agent.id, "input": "hi"}]).id for _ in range(4)]
        listed = [b.id for b in client.batches.list(limit=2)]
        assert len(listed) == len(set(listed)) == 5
        assert set(listed) == {batch.id, *others}
        listed_asc = [b.id for b in client.batches.list(limit=3, order="asc")]
        assert listed_asc == list(reversed(listed))

        # exactly one callback, signed, naming the batch and its final status
        calls = receiver.wait_for(1, timeout_s=10)
        for other in others:
            wait_for_status(client, other)
        wait_for_idle_queues(service.env["REDIS_URL"])  # nothing left that could send a duplicate
        assert len(receiver.received) == 1
        call = calls[0]
        body = call.json()
        assert body["job_id"] == batch.id and body["status"] == "completed"
        assert body["request_counts"]["succeeded"] == REQUESTS
        assert body["completed_at"] and body["metadata"]["job_type"] == "batch_messages"
        key = base64.b64decode(WEBHOOK_SECRET.removeprefix("whsec_"))
        signed = f"{call.headers['webhook-id']}.{call.headers['webhook-timestamp']}.".encode() + call.body
        expected = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
        assert call.headers["webhook-signature"] == f"v1,{expected}"


def test_given_image_content_parts_when_the_sdk_creates_batches_then_the_model_receives_them_on_every_later_turn(
        start_service):
    with FakeOpenAIServer() as model:
        service = start_service()
        client = Letta(base_url=service.base_url, api_key=service.api_key, max_retries=0,
                       _strict_response_validation=True)
        agent = _openai_agent(client, model)
        first = client.batches.create(requests=[{"agent_id": agent.id, "messages": [{"role": "user", "content": [
            {"type": "text", "text": "What is this?"},
            {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}}]}]}])
        assert wait_for_status(client, first.id, timeout_s=30).status == "completed"
        second = client.batches.create(requests=[{"agent_id": agent.id, "input": [
            {"type": "image", "source": {"type": "url", "url": "https://example.com/dog.jpg"}},
            {"type": "text", "text": "And this one?"}]}])
        assert wait_for_status(client, second.id, timeout_s=30).status == "completed"

        inline = {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}}
        by_url = {"type": "image_url", "image_url": {"url": "https://example.com/dog.jpg"}}
        assert model.requests[0]["messages"][1:] == [
            {"role": "user", "content": [{"type": "text", "text": "What is this?"}, inline]}]
        # the first image is history now: the next turn sends it again, with the new one
        assert [m["content"] for m in model.requests[1]["messages"][1:]] == [
            [{"type": "text", "text": "What is this?"}, inline], "Hello from the fake model.",
            [by_url, {"type": "text", "text": "And this one?"}]]

        # the stored input keeps its image, in the SDK's own ImageContent shape
        stored = next(m for m in client.batches.messages.list(first.id, order="asc") if m.role == "user")
        image = stored.content[1]
        assert (image.type, image.source.type, image.source.media_type, image.source.data) == (
            "image", "base64", "image/png", PNG)
