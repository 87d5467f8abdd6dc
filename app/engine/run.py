"""One request run through one agent: the step loop, timing, and the mapping of every way a run
can end to a stop_reason."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

from app.engine.messages import input_messages, new_message
from app.engine.prompt import compile_system_prompt, to_chat
from app.ids import new_id
from app.providers import ProviderRegistry, split_handle
from app.providers.base import InvalidResponseError, ModelRequest, ModelResponse, ProviderError
from app.providers.retry import RetryPolicy, stream_with_retries
from app.schemas.batches import LettaRequest
from app.settings import Settings
from app.store import Store
from app.store.runs import RunRecord

logger = logging.getLogger(__name__)

#: stop_reasons of a run that ended as designed; any other ends it as `errored`.
SUCCESS_STOP_REASONS = frozenset({"end_turn", "max_steps", "tool_rule", "requires_approval"})


class AgentRun:
    """Runs `request` through `agent`; `execute()` fills the run's messages and stop_reason.

    Messages of completed steps are kept on the instance, so a run cancelled mid-stream can
    still be recorded (its unfinished step is dropped).
    """

    def __init__(self, *, agent: dict[str, Any], request: LettaRequest, history: list[dict[str, Any]],
                 providers: ProviderRegistry, retry: RetryPolicy, max_steps_default: int,
                 batch_item_id: str | None = None, started_ns: int | None = None,
                 clock: Callable[[], int] = time.monotonic_ns) -> None:
        self.agent = agent
        self.request = request
        self.history = history
        self.providers = providers
        self.retry = retry
        self.max_steps = request.max_steps or max_steps_default
        self.batch_item_id = batch_item_id
        self.clock = clock
        #: When the item started (its claim), on `clock`: ttft and duration count from here.
        self.started_ns = clock() if started_ns is None else started_ns
        self.first_token_ns: int | None = None
        self.messages = input_messages(request, agent_id=agent["id"], batch_item_id=batch_item_id)
        self.blocks = {block["label"]: block for block in agent.get("blocks", [])}
        self.changed_blocks: set[str] = set()
        self.stop_reason: str | None = None
        self.error: str | None = None

    async def execute(self, *, timeout_s: float | None = None) -> None:
        """Run the step loop; every ending but cancellation is recorded, never raised."""
        try:
            async with asyncio.timeout(timeout_s):
                await self._steps()
        except ProviderError as exc:
            self._fail("llm_api_error", str(exc))
        except InvalidResponseError as exc:
            self._fail("invalid_llm_response", str(exc))
        except TimeoutError:
            self._fail("error", f"The run took longer than {timeout_s:g} s and was stopped.")
        except Exception as exc:
            logger.exception("Run of agent %s failed", self.agent["id"])
            self._fail("error", f"Internal error: {type(exc).__name__}: {exc}")

    async def _steps(self) -> None:
        for _step in range(self.max_steps):
            response = await self._call_model()
            self._record_step(response)
            if not response.tool_calls:
                self.stop_reason = "end_turn"
                return
        self.stop_reason = "max_steps"

    def record(self, *, outcome: str | None = None, stop_reason: str | None = None,
               error: str | None = None) -> RunRecord:
        """What to store of this run; outcome and stop_reason default to how the run ended."""
        stop_reason = stop_reason or self.stop_reason
        if outcome is None:
            outcome = "succeeded" if stop_reason in SUCCESS_STOP_REASONS else "errored"
        return RunRecord(
            outcome=outcome, stop_reason=stop_reason, messages=self.messages,
            blocks=[self.blocks[label] for label in sorted(self.changed_blocks)],
            ttft_ns=None if self.first_token_ns is None else self.first_token_ns - self.started_ns,
            total_duration_ns=self.clock() - self.started_ns, error=error or self.error,
        )

    def _fail(self, stop_reason: str, error: str) -> None:
        self.stop_reason, self.error = stop_reason, error

    def _first_token(self) -> None:
        if self.first_token_ns is None:
            self.first_token_ns = self.clock()

    async def _call_model(self) -> ModelResponse:
        provider_name, model = split_handle(self.agent["model"])
        llm_config = self.agent["llm_config"]
        request = ModelRequest(
            model=model,
            system=compile_system_prompt(self.agent["system"], list(self.blocks.values())),
            messages=tuple(to_chat(self.history + self.messages)),
            temperature=llm_config.get("temperature"),
            max_tokens=llm_config.get("max_tokens"),
            endpoint=llm_config.get("model_endpoint"),
            enable_thinking=str(self.request.enable_thinking).lower() in ("true", "1"),
        )
        return await stream_with_retries(self.providers.get(provider_name), request,
                                         on_first_token=self._first_token, policy=self.retry)

    def _record_step(self, response: ModelResponse) -> None:
        content: list[dict[str, Any]] = []
        if response.reasoning:
            content.append({"type": "reasoning", "reasoning": response.reasoning, "is_native": True,
                            "signature": response.reasoning_signature})
        if response.text:
            content.append({"type": "text", "text": response.text})
        tool_calls = [
            {"id": call.id, "type": "function", "function": {"name": call.name, "arguments": call.arguments}}
            for call in response.tool_calls
        ] or None
        self.messages.append(new_message(
            "assistant", content, agent_id=self.agent["id"], batch_item_id=self.batch_item_id,
            model=self.agent["llm_config"]["model"], step_id=new_id("step"), tool_calls=tool_calls,
        ))


class RunFactory:
    """Builds runs with the agent's recent history, the same way in the web and the worker."""

    def __init__(self, *, settings: Settings, store: Store, providers: ProviderRegistry) -> None:
        self.settings = settings
        self.store = store
        self.providers = providers
        self.retry = RetryPolicy.from_settings(settings)

    def new(self, agent: dict[str, Any], request: LettaRequest, *, batch_item_id: str | None = None,
            started_ns: int | None = None) -> AgentRun:
        history = self.store.messages.recent_for_agent(agent["id"], limit=self.settings.history_max_messages)
        return AgentRun(agent=agent, request=request, history=history, providers=self.providers, retry=self.retry,
                        max_steps_default=self.settings.max_steps_default, batch_item_id=batch_item_id,
                        started_ns=started_ns)
