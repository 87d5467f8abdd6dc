"""The processes under test run in the test's own directory, so the `.env` they read is the
test's (here: one written on purpose), never a developer's `.env` in the checkout."""

from __future__ import annotations

import httpx

from tests.e2e.conftest import wait_for_status
from tests.fakes.model_servers import FakeOpenAIServer
from tests.support.processes import REPO


def test_given_a_dotenv_in_the_test_directory_when_the_service_runs_then_web_and_worker_read_it_not_the_repos(
        start_service, tmp_path):
    # Settings reads `.env` from the working directory only: if this one is read, the repo's is not
    assert not tmp_path.resolve().is_relative_to(REPO)
    with FakeOpenAIServer() as model:
        (tmp_path / ".env").write_text(f"BATCHLINE_MAX_BODY_BYTES=4096\nOPENAI_BASE_URL={model.base_url}\n"
                                       "OPENAI_API_KEY=sk-from-the-test-dotenv\n")
        service = start_service()

        too_big = httpx.post(f"{service.base_url}/v1/agents/", headers=service.auth,
                             json={"name": "x" * 5000, "model": "simulated/echo"})
        assert too_big.status_code == 413

        client = service.client()
        agent = client.agents.create(model="openai/gpt-4o-mini")
        batch = client.batches.create(requests=[{"agent_id": agent.id, "input": "hi"}])
        assert wait_for_status(client, batch.id, timeout_s=30).status == "completed"
        assert [h["authorization"] for h in model.headers] == ["Bearer sk-from-the-test-dotenv"]
