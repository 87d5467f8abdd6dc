"""One request run through one agent: the step loop (model call, tool calls, tool rules,
approvals), timing, and the mapping of every way a run can end to a stop_reason."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable
from typing import Any

from app.engine.approvals import DENIAL_TEMPLATE, decisions_for, pending_approval, pending_calls
from app.engine.messages import (
    approval_request_message,
    approval_response_message,
    new_message,
    tool_call_dicts,
    tool_return_message,
)
from app.engine.prompt import TurnCache, compile_system_prompt, to_chat
from app.engine.rules import ToolRules
from app.engine.tools import BUILTIN_TOOLS, MEMORY_TOOL_NAMES, ToolContext, ToolError, validate_arguments
from app.engine.tools.messaging import SEND_MESSAGE_NAME
from app.ids import new_id
from app.providers import ProviderRegistry, split_handle
from app.providers.base import InvalidResponseError, ModelRequest, ModelResponse, ProviderError, ToolCall, ToolSpec
from app.providers.retry import RetryPolicy, stream_with_retries
from app.schemas.batches import LettaRequest
from app.schemas.messages import ToolReturnItem
from app.store.runs import RunRecord
from app.tenancy import owner_of
from app.vocabulary import SUCCESS_STOP_REASONS, ItemStatus, StopReason

logger = logging.getLogger(__name__)


class RunStopped(Exception):
    def __init__(self, stop_reason: str, error: str | None = None) -> None:
        super().__init__(error or stop_reason)
        self.stop_reason = stop_reason
        self.error = error


class AgentRun:
    """Runs `request` through `agent`; `execute()` fills the run's messages and stop_reason.

    Messages of completed steps are kept on the instance, so a run cancelled mid-stream can
    still be recorded (its unfinished step is dropped). `inputs` are the request's input as stored
    messages; the caller has checked that the request fits the agent's state (RequestRunner).
    """

    def __init__(self, *, agent: dict[str, Any], request: LettaRequest, history: list[dict[str, Any]],
                 inputs: list[dict[str, Any]], providers: ProviderRegistry, retry: RetryPolicy,
                 max_steps_default: int, batch_item_id: str | None = None, started_ns: int | None = None,
                 clock: Callable[[], int] = time.monotonic_ns, turn_cache: TurnCache | None = None) -> None:
        self.agent = agent
        self.request = request
        self.history = history
        self.turn_cache = turn_cache
        self.providers = providers
        self.retry = retry
        # 0 or less is allowed (as on Letta): the run ends with max_steps before any model call.
        self.max_steps = max_steps_default if request.max_steps is None else request.max_steps
        self.batch_item_id = batch_item_id
        self.clock = clock
        #: When the item started (its claim), on `clock`: ttft and duration count from here.
        self.started_ns = clock() if started_ns is None else started_ns
        self.first_token_ns: int | None = None
        self.messages = list(inputs)
        self.input_count = len(inputs)
        self.tools = ToolContext(blocks={block["label"]: block for block in agent.get("blocks", [])},
                                 messages=[], changed_blocks=set())
        self.block_versions = {label: block.get("version", 0) for label, block in self.tools.blocks.items()}
        self.block_edits: list[tuple[str, dict[str, Any]]] = []
        self.rules = ToolRules(agent.get("tool_rules", []))
        self.client_tools = {tool.name: tool for tool in request.client_tools or []}
        self.tool_names = [name for name in agent.get("tools", []) if name in BUILTIN_TOOLS] + [
            name for name in self.client_tools if name not in BUILTIN_TOOLS]
        self.stop_reason: str | None = None
        self.error: str | None = None
        #: The approval request this run answers: its commit is refused if another run answered it.
        self.answers_approval: str | None = None

    # -- the loop ----------------------------------------------------------------------

    async def execute(self, *, timeout_s: float | None = None) -> None:
        """Run the step loop; every ending but cancellation is recorded, never raised."""
        try:
            async with asyncio.timeout(timeout_s):
                await self._steps()
        except RunStopped as stop:
            self.stop_reason, self.error = stop.stop_reason, stop.error
        except ProviderError as exc:
            self.stop_reason, self.error = StopReason.LLM_API_ERROR, str(exc)
        except InvalidResponseError as exc:
            self.stop_reason, self.error = StopReason.INVALID_LLM_RESPONSE, str(exc)
        except TimeoutError:
            self.stop_reason = StopReason.ERROR
            self.error = f"The run took longer than {timeout_s:g} s and was stopped."
        except Exception as exc:
            logger.exception("Run of agent %s failed", self.agent["id"])
            self.stop_reason, self.error = StopReason.ERROR, f"Internal error: {type(exc).__name__}: {exc}"

    async def _steps(self) -> None:
        resumption = self.request.resumption
        if resumption is not None and self._resume(pending_approval(self.history), resumption):
            return
        for _step in range(self.max_steps):
            offered = self.rules.allowed(self.tool_names)
            response = await self._call_model(offered)
            if self._handle_response(response, offered):
                return
        raise RunStopped(StopReason.MAX_STEPS)

    def _handle_response(self, response: ModelResponse, offered: list[str]) -> bool:
        """Record one model answer and act on its tool calls; True when the run ends here."""
        step_id = new_id("step")
        calls = response.tool_calls
        if not calls:
            self._record_assistant(response, [], step_id)
            if why := self.rules.tool_required():
                raise RunStopped(StopReason.NO_TOOL_CALL, f"The model answered without a tool call, but {why}.")
            if missing := self.rules.missing_before_exit():
                raise RunStopped(StopReason.NO_TOOL_CALL, f"The model ended its turn without calling {missing}, "
                                                          "which the agent's required_before_exit rule demands.")
            self.stop_reason = StopReason.END_TURN
            return True
        problems = {call.id: why for call in calls if (why := self._invalid(call, offered))}
        if problems:
            self._record_assistant(response, calls, step_id)
            for call in calls:
                reason = problems.get(call.id, "another tool call of the same step was invalid")
                self._append(tool_return_message(call, f"Error: not executed: {reason}.", is_error=True,
                                                 **self._ids(step_id)))
            raise RunStopped(StopReason.INVALID_TOOL_CALL, "; ".join(problems.values()))
        waiting = [call for call in calls if call.name in self.client_tools or self.rules.needs_approval(call.name)]
        now = [call for call in calls if call not in waiting]
        self._record_assistant(response, now, step_id)
        for call in now:
            self._run_tool(call, step_id)
        if waiting:
            self._append(approval_request_message(waiting, **self._ids(step_id)))
            self.stop_reason = StopReason.REQUIRES_APPROVAL
            return True
        return self._ends_after(now)

    def _ends_after(self, executed: list[ToolCall]) -> bool:
        if self.rules.missing_before_exit():
            return False
        if any(self.rules.is_terminal(call.name) for call in executed):
            self.stop_reason = StopReason.TOOL_RULE
            return True
        if any(call.name == SEND_MESSAGE_NAME for call in executed):
            self.stop_reason = StopReason.END_TURN  # the agent replied through its message tool
            return True
        return False

    # -- tools ---------------------------------------------------------------------------

    def _invalid(self, call: ToolCall, offered: list[str]) -> str | None:
        if call.name not in self.tool_names:
            return f"the model called unknown tool {call.name!r}"
        if call.name not in offered:
            return f"the agent's tool rules do not allow {call.name!r} now (allowed: {offered})"
        try:
            arguments = json.loads(call.arguments or "{}")
        except json.JSONDecodeError:
            return f"the arguments of {call.name!r} are not valid JSON"
        if call.name in self.client_tools:  # the client validates its own tools' arguments
            return None if isinstance(arguments, dict) else f"the arguments of {call.name!r} are not a JSON object"
        problem = validate_arguments(BUILTIN_TOOLS[call.name].parameters, arguments)
        return f"the arguments of {call.name!r} do not fit its schema: {problem}" if problem else None

    def _run_tool(self, call: ToolCall, step_id: str | None) -> None:
        self.tools.messages = self.history + self.messages
        arguments = json.loads(call.arguments or "{}")
        try:
            text, is_error = BUILTIN_TOOLS[call.name].run(self.tools, arguments), False
        except ToolError as exc:
            text, is_error = str(exc), True
        if not is_error and call.name in MEMORY_TOOL_NAMES:
            self.block_edits.append((call.name, arguments))
        self.rules.register(call.name)
        self._append(tool_return_message(call, text, is_error=is_error, **self._ids(step_id)))

    def _resume(self, pending: dict[str, Any], answer: Any) -> bool:
        """Answer the paused tool calls as the client decided; True when the run ends there."""
        calls = pending_calls(pending)
        decisions = decisions_for(answer, calls)  # approval_conflict has checked they fit
        self.answers_approval = pending["id"]
        self._append(approval_response_message([decisions[call.id].model_dump() for call in calls],
                                               request_id=pending["id"], **self._ids(None)))
        executed = []
        for call in calls:
            decision = decisions[call.id]
            if isinstance(decision, ToolReturnItem):
                self._append(tool_return_message(call, decision.tool_return, is_error=decision.status == "error",
                                                 **self._ids(pending.get("step_id"))))
                self.rules.register(call.name)
            elif not decision.approve:
                self._append(tool_return_message(call, DENIAL_TEMPLATE.format(reason=decision.reason),
                                                 is_error=True, **self._ids(pending.get("step_id"))))
            elif call.name not in BUILTIN_TOOLS or call.name not in self.agent.get("tools", []):
                self._append(tool_return_message(
                    call, f"Error: {call.name!r} runs on the client; answer it with a tool return, not an approval.",
                    is_error=True, **self._ids(pending.get("step_id"))))
            else:
                self._run_tool(call, pending.get("step_id"))
                executed.append(call)
        return self._ends_after(executed)

    # -- model calls and records ---------------------------------------------------------

    async def _call_model(self, offered: list[str]) -> ModelResponse:
        provider_name, model = split_handle(self.agent["model"])
        llm_config = self.agent["llm_config"]
        request = ModelRequest(
            model=model,
            system=compile_system_prompt(self.agent["system"], list(self.tools.blocks.values())),
            messages=tuple(to_chat(self.history + self.messages, cache=self.turn_cache)),
            tools=tuple(self._spec(name) for name in offered),
            tool_choice="required" if offered and self.rules.tool_required() else None,
            temperature=llm_config.get("temperature"),
            max_tokens=llm_config.get("max_tokens"),
            endpoint=llm_config.get("model_endpoint"),
            enable_thinking=str(self.request.enable_thinking).lower() in ("true", "1")
            or bool(llm_config.get("enable_reasoner")),
        )
        return await stream_with_retries(self.providers.get(provider_name), request,
                                         on_first_token=self._first_token, policy=self.retry)

    def _spec(self, name: str) -> ToolSpec:
        if name in self.client_tools:
            tool = self.client_tools[name]
            return ToolSpec(name=name, description=tool.description or "",
                            parameters=tool.parameters or {"type": "object", "properties": {}})
        return BUILTIN_TOOLS[name].spec

    def _first_token(self) -> None:
        if self.first_token_ns is None:
            self.first_token_ns = self.clock()

    def _ids(self, step_id: str | None) -> dict[str, Any]:
        return {"agent_id": self.agent["id"], "batch_item_id": self.batch_item_id, "step_id": step_id}

    def _append(self, message: dict[str, Any]) -> None:
        # Every message the run writes belongs to the agent's tenant (stamped here rather than
        # passed through each builder).
        message["created_by_id"] = owner_of(self.agent.get("created_by_id"))
        self.messages.append(message)

    def _record_assistant(self, response: ModelResponse, calls: list[ToolCall], step_id: str) -> None:
        content: list[dict[str, Any]] = []
        if response.reasoning:
            content.append({"type": "reasoning", "reasoning": response.reasoning, "is_native": True,
                            "signature": response.reasoning_signature})
        if response.text:
            content.append({"type": "text", "text": response.text})
        self._append(new_message("assistant", content, model=self.agent["llm_config"]["model"],
                                 tool_calls=tool_call_dicts(calls), **self._ids(step_id)))

    def record(self, *, outcome: str | None = None, stop_reason: str | None = None,
               error: str | None = None) -> RunRecord:
        """What to store of this run; outcome and stop_reason default to how the run ended."""
        stop_reason = stop_reason or self.stop_reason
        if outcome is None:
            outcome = ItemStatus.SUCCEEDED if stop_reason in SUCCESS_STOP_REASONS else ItemStatus.ERRORED
        return RunRecord(
            outcome=outcome, stop_reason=stop_reason, messages=self.messages,
            blocks=[self.tools.blocks[label] | {"base_version": self.block_versions.get(label, 0)}
                    for label in sorted(self.tools.changed_blocks)],
            block_edits=self.block_edits,
            ttft_ns=None if self.first_token_ns is None else self.first_token_ns - self.started_ns,
            total_duration_ns=self.clock() - self.started_ns, error=error or self.error,
            answers_approval=self.answers_approval,
        )
