"""Two requests that answer one paused tool call at the same time (RequestRunner on a real Redis,
a local fake OpenAI server): the tool's effect and its result are kept once."""

from __future__ import annotations

import asyncio
import json

from app.engine.runner import ApprovalConflict, RequestRunner
from app.providers import ProviderRegistry, make_http_client
from app.schemas.agents import CreateAgent
from app.schemas.batches import LettaRequest
from app.settings import Settings
from app.store import Store, connect
from app.store.runs import ALREADY_ANSWERED
from tests.fakes.model_servers import FakeOpenAIServer, Reply


def test_given_a_paused_call_when_two_synchronous_approvals_race_then_one_runs_it_and_the_other_is_refused(
        settings: Settings) -> None:
    store = Store(client=connect(settings.redis_url))
    with FakeOpenAIServer() as model:
        append = Reply(text="", tool_calls=[("core_memory_append", json.dumps({"label": "human",
                                                                              "content": "Likes tea."}))])
        # Every answer after the first waits, so both approvals have read the pending call before either commits.
        model.script = lambda body, n: append if n == 0 else Reply(text="Saved.", first_token_delay_s=0.3)
        agent_id = store.agents.create(CreateAgent(
            model="openai/gpt-4o-mini", tools=["core_memory_append"],
            tool_rules=[{"type": "requires_approval", "tool_name": "core_memory_append"}],
            memory_blocks=[{"label": "human", "value": "Name: Sam"}],
            llm_config={"model": "gpt-4o-mini", "model_endpoint_type": "openai",
                        "model_endpoint": model.base_url}))["id"]

        async def scenario() -> list[object]:
            async with make_http_client(settings) as client:
                runner = RequestRunner(settings=settings, store=store,
                                       providers=ProviderRegistry(settings=settings, client=client))
                paused = await runner.run(store.agents.get(agent_id), LettaRequest(input="Remember tea."))
                assert paused.record.stop_reason == "requires_approval"
                call_id = paused.record.messages[-1]["tool_calls"][0]["id"]
                approve = LettaRequest.model_validate({"messages": [{"type": "approval", "approvals": [
                    {"type": "approval", "tool_call_id": call_id, "approve": True}]}]})
                return await asyncio.gather(*(runner.run(store.agents.get(agent_id), approve) for _ in range(2)),
                                            return_exceptions=True)

        results = asyncio.run(scenario())
    assert model.max_open_streams == 2  # both approvals were answered by the model at the same time
    assert store.agents.blocks(agent_id)["human"]["value"] == "Name: Sam\nLikes tea."
    history = store.messages.page_for_agent(agent_id, after=None, before=None, limit=50, order="asc")
    assert [m["role"] for m in history] == ["user", "assistant", "approval", "approval", "tool", "assistant"]
    [refused] = [result for result in results if isinstance(result, Exception)]
    assert isinstance(refused, ApprovalConflict) and str(refused) == ALREADY_ANSWERED
    [won] = [result for result in results if not isinstance(result, Exception)]
    assert won.record.stop_reason == "end_turn"

