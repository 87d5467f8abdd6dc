"""One agent on its own scripted fake OpenAI server, on a running Batchline service."""

from __future__ import annotations

import json
from typing import Any

import httpx

from tests.e2e.conftest import wait_for_status
from tests.fakes.model_servers import FakeOpenAIServer, Reply


def tool_call(name: str, **arguments: Any) -> Reply:
    return Reply(text="", tool_calls=[(name, json.dumps(arguments))])


class Scenario:
    """One agent on its own scripted fake OpenAI server, on the shared service."""

    def __init__(self, service, *, replies: list[Reply] | None = None, **agent: Any) -> None:
        self.service = service
        self.client = service.client()
        self.model = FakeOpenAIServer().start()
        self.replies = list(replies or [])
        self.model.script = lambda body, n: self.replies[n] if n < len(self.replies) else None
        self.agent = self.client.agents.create(
            model="openai/gpt-4o-mini", llm_config={"model": "gpt-4o-mini", "model_endpoint_type": "openai",
                                                   "model_endpoint": self.model.base_url},
            memory_blocks=agent.pop("memory_blocks", [{"label": "human", "value": "Name: Sam"}]), **agent)

    def run(self, *requests: dict[str, Any], statuses: tuple[str, ...] | None = None):
        batch = self.client.batches.create(requests=[{"agent_id": self.agent.id, **r} for r in requests])
        done = wait_for_status(self.client, batch.id, statuses or ("completed", "failed", "cancelled", "expired"),
                               timeout_s=30)
        return done, self.items(batch.id), self.messages(batch.id)

    def items(self, batch_id: str) -> list[dict[str, Any]]:
        return httpx.get(f"{self.service.base_url}/v1/messages/batches/{batch_id}/requests",
                         headers=self.service.auth).json()

    def messages(self, batch_id: str) -> list[Any]:
        return list(self.client.batches.messages.list(batch_id, order="asc"))

    def close(self) -> None:
        self.model.stop()
