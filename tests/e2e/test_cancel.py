"""Cancellation through the SDK against real processes: the batch turns cancelled at once,
in-flight model streams are closed mid-stream, queued requests never reach the model, and the
callback fires. The workers' status poll is set to an hour, so only Redis pub/sub can close the
streams in time."""

from __future__ import annotations

import time

import httpx
import redis

from tests.e2e.conftest import wait_for_status, wait_until
from tests.e2e.test_sdk_end_to_end import _openai_agent
from tests.fakes.model_servers import FakeOpenAIServer
from tests.support.receiver import CallbackReceiver

HOLD_S = 30.0
#: Longer than any test here: a stop must come through pub/sub.
NO_POLL = {"BATCHLINE_STOP_POLL_S": "3600"}


def test_given_streams_held_for_30s_when_the_batch_is_cancelled_then_it_is_cancelled_within_a_second_and_every_stream_closes(  # noqa: E501
        start_service):
    with FakeOpenAIServer(first_token_delay_s=HOLD_S) as model, CallbackReceiver() as receiver:
        service = start_service(**NO_POLL)
        client = service.client()
        agent = _openai_agent(client, model)
        batch = client.batches.create(requests=[{"agent_id": agent.id, "input": f"q{i}"} for i in range(20)],
                                      callback_url=receiver.url)
        assert model.wait_for_open_streams(20, timeout_s=20)
        wait_for_status(client, batch.id, ("running",), timeout_s=5)

        started = time.monotonic()
        assert client.batches.cancel(batch.id) is None
        assert client.batches.retrieve(batch.id).status == "cancelled"  # in the same call
        assert wait_until(lambda: model.streams_closed_by_client == 20, timeout_s=1.0), model.streams_closed_by_client
        assert time.monotonic() - started < 1.0  # from the cancel call to the last stream closed
        cancelled = client.batches.retrieve(batch.id)

        assert cancelled.stop_reason == "cancelled"
        assert cancelled.completed_at is not None
        assert model.open_streams == 0 and model.completed_streams == 0
        assert wait_until(lambda: client.batches.retrieve(batch.id).request_counts["cancelled"] == 20, timeout_s=5)
        final = client.batches.retrieve(batch.id)
        assert final.request_counts["running"] == 0 and final.request_counts["succeeded"] == 0
        items = httpx.get(f"{service.base_url}/v1/messages/batches/{batch.id}/requests", headers=service.auth).json()
        assert {(item["status"], item["stop_reason"]) for item in items} == {("cancelled", "cancelled")}

        calls = receiver.wait_for(1, timeout_s=10)
        assert len(calls) == 1 and calls[0].json()["status"] == "cancelled"
        assert calls[0].json()["request_counts"]["cancelled"] == 20
        # cancelling again is fine; the batch stays cancelled
        assert client.batches.cancel(batch.id) is None
        assert client.batches.retrieve(batch.id).status == "cancelled"


def test_given_more_requests_than_the_worker_runs_at_once_when_cancelled_then_the_queued_ones_never_reach_the_model(
        start_service):
    with FakeOpenAIServer(first_token_delay_s=HOLD_S) as model:
        service = start_service(threads=1, BATCHLINE_CHUNK_SIZE="10", **NO_POLL)
        client = service.client()
        agent = _openai_agent(client, model)
        batch = client.batches.create(requests=[{"agent_id": agent.id, "input": f"q{i}"} for i in range(40)])
        assert model.wait_for_open_streams(10, timeout_s=20)
        client.batches.cancel(batch.id)
        assert wait_until(lambda: model.streams_closed_by_client == 10, timeout_s=2.0)
        # Every chunk must have had its turn on the one thread, or "never reached the model" would
        # prove nothing: a worker that processed an item leaves its own status on its record.
        store = redis.Redis.from_url(service.env["REDIS_URL"], decode_responses=True)
        item_ids = store.zrange(f"bl:batch:{batch.id}:items", 0, -1)
        assert wait_until(lambda: all(store.hget(f"bl:item:{item}", "status") == "cancelled" for item in item_ids),
                          timeout_s=15)
        final = client.batches.retrieve(batch.id)
        assert final.status == "cancelled"
        assert final.request_counts["cancelled"] == 40 and final.request_counts["running"] == 0
        assert len(model.requests) == 10
