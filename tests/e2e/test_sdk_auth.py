"""The official SDK against the real service: `Letta(api_key=...)` runs a batch end to end with
strict response validation, and a client without a key (none in LETTA_API_KEY either) or with
a wrong one gets the SDK's AuthenticationError (401), never data."""

from __future__ import annotations

import letta_client
import pytest
from letta_client import Letta

from tests.e2e.conftest import wait_for_status
from tests.fakes.model_servers import FakeOpenAIServer


def test_given_the_key_when_the_sdk_runs_a_batch_then_every_call_passes_strict_validation(start_service):
    service = start_service()
    client = service.client(api_key=service.api_key)

    with FakeOpenAIServer() as model:
        agent = client.agents.create(model="openai/gpt-4o-mini", name="sdk-auth", llm_config={
            "model": "gpt-4o-mini", "model_endpoint_type": "openai", "model_endpoint": model.base_url})
        batch = client.batches.create(requests=[{"agent_id": agent.id, "input": f"hello {i}"} for i in range(3)])
        done = wait_for_status(client, batch.id)

    assert done.status == "completed" and done.request_counts["succeeded"] == 3
    assert batch.id in [listed.id for listed in client.batches.list()]
    assert len(list(client.batches.messages.list(batch.id))) == 6


@pytest.mark.parametrize("api_key", [None, "bl_" + "n" * 43, "not-a-batchline-key"])
def test_given_no_key_or_a_wrong_one_when_the_sdk_calls_then_it_raises_authentication_error_401(
        start_service, monkeypatch, api_key):
    service = start_service(workers=False)
    monkeypatch.delenv("LETTA_API_KEY", raising=False)
    client = Letta(base_url=service.base_url, api_key=api_key, max_retries=0, _strict_response_validation=True)

    for call in (client.agents.list, client.batches.list, lambda: client.batches.retrieve("job-x"),
                 lambda: client.batches.create(requests=[{"agent_id": "agent-x", "input": "hi"}])):
        with pytest.raises(letta_client.AuthenticationError) as raised:
            call()
        assert raised.value.status_code == 401
        assert "API key" in raised.value.body["detail"]
