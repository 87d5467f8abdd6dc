"""One worker process holds hundreds of model streams open at once (plain Dramatiq threads
would give one per thread)."""

from __future__ import annotations

from tests.e2e.conftest import wait_for_status
from tests.e2e.test_sdk_end_to_end import _openai_agent
from tests.fakes.model_servers import FakeOpenAIServer

STREAMS = 250
#: Long enough that the first stream is still waiting for its first token when the last one
#: opens, on a loaded 2-core machine.
FIRST_TOKEN_DELAY_S = 10.0


def test_given_one_worker_process_with_8_threads_when_250_requests_run_then_all_250_streams_are_open_at_once(
        start_service):
    with FakeOpenAIServer(first_token_delay_s=FIRST_TOKEN_DELAY_S) as model:
        service = start_service(processes=1, threads=8)
        client = service.client()
        agent = _openai_agent(client, model)
        batch = client.batches.create(requests=[{"agent_id": agent.id, "input": f"q{i}"} for i in range(STREAMS)])
        assert model.wait_for_open_streams(STREAMS, timeout_s=FIRST_TOKEN_DELAY_S), model.max_open_streams
        done = wait_for_status(client, batch.id, timeout_s=60)
        assert done.status == "completed"
        assert done.request_counts["succeeded"] == STREAMS
        assert model.max_open_streams == STREAMS
