"""Where Letta accepts what a stricter server might refuse, Batchline does too, through the
official SDK with strict response validation: `limit=0`, `max_steps` of 0 or below, a
callback host that does not resolve yet. And what Batchline cannot honour (an unknown query
parameter, a private callback target) is refused instead of ignored."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import httpx
import pytest
import redis
from letta_client import Letta, UnprocessableEntityError

from app.embedded_redis import free_port
from tests.e2e.conftest import WEBHOOK_SECRET, wait_for_status, wait_until
from tests.fakes.model_servers import FakeOpenAIServer
from tests.support.processes import service_env, web_process, worker_process

MAX_STEPS_CEILING = 5


@pytest.fixture(scope="module")
def base_url(redis_server: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One web process and one worker, callbacks to private addresses refused (the default)."""
    redis.Redis.from_url(redis_server).flushall()
    logs: Path = tmp_path_factory.mktemp("parity")
    env = service_env(redis_server, BATCHLINE_WEBHOOK_SECRET=WEBHOOK_SECRET, BATCHLINE_VAR_DIR=str(logs / "var"),
                      BATCHLINE_CALLBACK_ALLOW_PRIVATE="false", BATCHLINE_MAX_STEPS_CEILING=str(MAX_STEPS_CEILING),
                      BATCHLINE_SIMULATED_TTFT_MS="0", BATCHLINE_SIMULATED_TOKEN_MS="0",
                      BATCHLINE_CALLBACK_MAX_ATTEMPTS="4")
    with ExitStack() as stack:
        stack.enter_context(worker_process(env, log=logs / "worker.log", processes=1, threads=4))
        yield stack.enter_context(web_process(env, port=free_port(), log=logs / "web.log"))


@pytest.fixture(scope="module")
def auth(base_url: str, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    key_file = next(tmp_path_factory.getbasetemp().glob("parity*/var/api-key"))
    return {"Authorization": f"Bearer {key_file.read_text().strip()}"}


@pytest.fixture
def client(base_url: str, auth: dict[str, str]) -> Letta:
    return Letta(base_url=base_url, api_key=auth["Authorization"].removeprefix("Bearer "), max_retries=0,
                 _strict_response_validation=True)


@pytest.fixture
def model() -> Iterator[FakeOpenAIServer]:
    with FakeOpenAIServer() as server:
        yield server


def _agent(client: Letta, model: FakeOpenAIServer):
    return client.agents.create(model="openai/gpt-4o-mini", llm_config={
        "model": "gpt-4o-mini", "model_endpoint_type": "openai", "model_endpoint": model.base_url})


def test_given_stored_objects_when_every_list_route_is_asked_for_limit_zero_then_each_page_is_empty(client, model):
    agent = _agent(client, model)
    batch = client.batches.create(requests=[{"agent_id": agent.id, "input": "hello"}])
    wait_for_status(client, batch.id, timeout_s=30)
    assert len(client.batches.list(limit=1).items) == 1 and client.batches.messages.list(batch.id, limit=1).messages

    assert client.batches.list(limit=0).items == []
    assert client.agents.list(limit=0).items == []
    assert client.batches.messages.list(batch.id, limit=0).messages == []
    assert client.agents.messages.list(agent.id, limit=0).items == []
    with pytest.raises(UnprocessableEntityError, match="limit"):
        client.batches.list(limit=-1)


def test_given_max_steps_of_zero_or_below_when_a_batch_runs_then_no_model_call_and_the_requests_end_with_max_steps(
        client, base_url, auth, model):
    agent = _agent(client, model)
    batch = client.batches.create(requests=[{"agent_id": agent.id, "input": "a", "max_steps": 0},
                                            {"agent_id": agent.id, "input": "b", "max_steps": -3}])
    assert wait_for_status(client, batch.id, timeout_s=30).status == "completed"
    items = httpx.get(f"{base_url}/v1/messages/batches/{batch.id}/requests", headers=auth).json()
    assert [(item["status"], item["stop_reason"]) for item in items] == [("succeeded", "max_steps")] * 2
    assert model.requests == []

    answer = client.agents.messages.create(agent.id, input="c", max_steps=0)
    assert answer.stop_reason.stop_reason == "max_steps" and model.requests == []


def test_given_the_max_steps_ceiling_setting_when_a_request_asks_for_more_then_422_names_the_request(client, model):
    agent = _agent(client, model)
    allowed = client.batches.create(requests=[{"agent_id": agent.id, "input": "a", "max_steps": MAX_STEPS_CEILING}])
    assert allowed.id.startswith("job-")
    with pytest.raises(UnprocessableEntityError) as refused:
        client.batches.create(requests=[{"agent_id": agent.id, "input": "a"},
                                        {"agent_id": agent.id, "input": "b", "max_steps": MAX_STEPS_CEILING + 1}])
    detail = refused.value.response.json()["detail"]
    assert "requests.1.max_steps" in detail and f"at most {MAX_STEPS_CEILING}" in detail
    with pytest.raises(UnprocessableEntityError, match="max_steps"):
        client.agents.messages.create(agent.id, input="c", max_steps=MAX_STEPS_CEILING + 1)


def test_given_a_callback_host_that_does_not_resolve_when_the_batch_ends_then_it_was_accepted_and_delivery_retries(
        client, model):
    agent = _agent(client, model)
    batch = client.batches.create(requests=[{"agent_id": agent.id, "input": "a"}],
                                  callback_url="https://no-such-host.invalid/hook")
    assert batch.callback_url == "https://no-such-host.invalid/hook"
    wait_for_status(client, batch.id, timeout_s=30)
    assert wait_until(lambda: client.batches.retrieve(batch.id).callback_sent_at is not None, timeout_s=15)
    first = client.batches.retrieve(batch.id)
    assert first.callback_error == "callback_url host 'no-such-host.invalid' does not resolve"
    assert first.callback_status_code is None
    # Dramatiq retries after its backoff (1 s, then doubling); the latest attempt is recorded.
    assert wait_until(lambda: client.batches.retrieve(batch.id).callback_sent_at != first.callback_sent_at,
                      timeout_s=20, interval_s=0.2)


@pytest.mark.parametrize("url", ["http://127.0.0.1:9/hook", "http://localhost/hook", "http://100.64.0.1/hook",
                                 "http://[::ffff:10.0.0.1]/hook", "http://169.254.169.254/latest"])
def test_given_a_callback_to_a_non_public_address_when_created_then_422_and_no_batch(client, model, url):
    agent = _agent(client, model)
    before = len(client.batches.list().items)
    with pytest.raises(UnprocessableEntityError) as refused:
        client.batches.create(requests=[{"agent_id": agent.id, "input": "a"}], callback_url=url)
    assert refused.value.response.json()["errors"][0]["loc"] == ["callback_url"]
    assert len(client.batches.list().items) == before


def test_given_a_query_parameter_the_route_does_not_support_when_listing_then_422_names_it(client, model):
    agent = _agent(client, model)
    for call in (lambda: client.batches.list(extra_query={"status": "running"}),
                 lambda: client.agents.list(tags=["support"]),
                 lambda: client.agents.messages.list(agent.id, include_err=True)):
        with pytest.raises(UnprocessableEntityError) as refused:
            call()
        assert "unknown query parameter" in refused.value.response.json()["detail"]
    assert client.agents.list(name=agent.name, order="asc", order_by="created_at").items[0].id == agent.id
    assert client.agents.messages.list(agent.id, use_assistant_message=False, order="asc").items == []
