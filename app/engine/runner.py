"""Run one request, the same way for a batch item in a worker and for the synchronous
`POST /v1/agents/{id}/messages`: check it against the agent's state, execute the step loop, record
and commit its outcome once."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from app.engine.approvals import approval_conflict
from app.engine.commit import commit_run
from app.engine.history import BYTES_PER_TOKEN, HistoryCache, context_budget_bytes
from app.engine.messages import input_messages
from app.engine.prompt import compile_system_prompt
from app.engine.run import AgentRun
from app.providers import ProviderRegistry
from app.providers.retry import RetryPolicy
from app.redis_retry import RedisRetry
from app.schemas.batches import LettaRequest
from app.settings import Settings
from app.store import Store
from app.store.runs import ALREADY_ANSWERED, Commit, RunRecord
from app.tenancy import owner_of
from app.vocabulary import ItemStatus, StopReason, item_status_for_stop, stop_reason_for_stop

logger = logging.getLogger(__name__)


class ApprovalConflict(Exception):
    """The request does not fit the agent's approval state (see approvals.approval_conflict)."""


class PromptTooLarge(Exception):
    """The request cannot fit the agent's context window: nothing is sent to the model."""

    def __init__(self, message: str, *, stop_reason: StopReason) -> None:
        super().__init__(message)
        self.stop_reason = stop_reason


@dataclass(frozen=True)
class BatchItemRef:
    """Where a batch item's run commits."""

    batch_id: str
    item_id: str
    #: Redis-clock microseconds of the item's claim: the batch's ttft is measured on that clock.
    claimed_us: int


@dataclass(frozen=True)
class Finished:
    record: RunRecord
    commit: Commit
    #: How many of `record.messages` are the request's own input (the rest the run produced).
    inputs: int


#: Commits a batch item's run: (agent_id=, record=, batch_id=, item_id=) -> Commit.
ItemCommitter = Callable[..., Awaitable[Commit]]

#: Asked when a run is cancelled: the batch status that stopped it, or None when the run is
#: being given back (the worker shuts down) and must not be recorded.
StoppedAs = Callable[[], str | None]


class RequestRunner:
    def __init__(self, *, settings: Settings, store: Store, providers: ProviderRegistry,
                 history: HistoryCache | None = None, redis_retry: RedisRetry | None = None,
                 clock: Callable[[], int] = time.monotonic_ns, commits: ItemCommitter | None = None) -> None:
        self.settings = settings
        #: How a commit waits out a Redis outage: the run's result is in hand, and a run of a
        #: model is worth more than a wait (without it, the error is raised).
        self.redis_retry = redis_retry
        #: How a batch item's run is committed when the caller batches commits (a worker:
        #: actors/batching.py); without it, each on its own.
        self.commits = commits
        self.store = store
        self.providers = providers
        self.history = history or HistoryCache(store=store, max_messages=settings.history_max_messages,
                                               max_bytes=settings.history_max_bytes)
        self.retry = RetryPolicy.from_settings(settings)
        self.clock = clock

    def prepare(self, agent: dict[str, Any], request: LettaRequest, *, batch_item_id: str | None = None,
                started_ns: int | None = None, history_fresh: bool = False) -> AgentRun:
        """The run, ready to execute. Raises ApprovalConflict or PromptTooLarge. `history_fresh`:
        the caller has just taken in the agent's newer messages (HistoryCache.absorb)."""
        inputs = input_messages(request, agent_id=agent["id"], batch_item_id=batch_item_id,
                                created_by_id=owner_of(agent.get("created_by_id")))
        budget = context_budget_bytes(agent["llm_config"])
        system_bytes = len(compile_system_prompt(agent["system"], agent.get("blocks", [])))
        input_bytes = sum(_content_bytes(message) for message in inputs)
        _check_fits(agent, budget=budget, system_bytes=system_bytes, input_bytes=input_bytes)
        history = self.history.recent(agent["id"], budget_bytes=budget - system_bytes - input_bytes,
                                      refresh=not history_fresh)
        if conflict := approval_conflict(history, request.resumption):
            raise ApprovalConflict(conflict)
        return AgentRun(agent=agent, request=request, history=history, inputs=inputs, providers=self.providers,
                        retry=self.retry, max_steps_default=self.settings.max_steps_default,
                        batch_item_id=batch_item_id, started_ns=started_ns, clock=self.clock,
                        turn_cache=self.history.turns)

    async def run(self, agent: dict[str, Any], request: LettaRequest, *, item: BatchItemRef | None = None,
                  started_ns: int | None = None, stopped_as: StoppedAs | None = None,
                  history_fresh: bool = False) -> Finished:
        """Run the request to its end and commit it. Outside a batch an approval conflict is
        raised (the caller answers 409); in a batch it is the item's recorded error."""
        started_ns = self.clock() if started_ns is None else started_ns
        batch_item_id = item.item_id if item else None
        try:
            run = self.prepare(agent, request, batch_item_id=batch_item_id, started_ns=started_ns,
                               history_fresh=history_fresh)
        except ApprovalConflict as exc:
            if item is None:
                raise
            # The input is not recorded: it would split a paused tool call from its result.
            return await self._commit(agent["id"], self._failed(StopReason.ERROR, str(exc), started_ns), item, None)
        except PromptTooLarge as exc:
            record = self._failed(exc.stop_reason, str(exc), started_ns)
            record.messages = input_messages(request, agent_id=agent["id"], batch_item_id=batch_item_id,
                                            created_by_id=owner_of(agent.get("created_by_id")))
            return await self._commit(agent["id"], record, item, None, inputs=len(record.messages))
        try:
            await run.execute(timeout_s=self.settings.item_timeout_s)
            record = run.record()
        except asyncio.CancelledError:
            status = stopped_as() if stopped_as else None
            if status is None:
                raise
            asyncio.current_task().uncancel()
            record = run.record(outcome=item_status_for_stop(status), stop_reason=stop_reason_for_stop(status))
        return await self._commit(agent["id"], record, item, run, inputs=run.input_count)

    async def record_stop(self, agent_id: str, item: BatchItemRef, batch_status: str) -> Finished:
        """Settle an item that a dead owner left running in a stopped batch."""
        record = RunRecord(outcome=item_status_for_stop(batch_status), stop_reason=stop_reason_for_stop(batch_status))
        return await self._commit(agent_id, record, item, None)

    async def record_error(self, agent_id: str, item: BatchItemRef, error: str, *, started_ns: int) -> Finished:
        """End an item that cannot run at all (its agent is gone, its request unreadable, a bug)."""
        return await self._commit(agent_id, self._failed(StopReason.ERROR, error, started_ns), item, None)

    def _failed(self, stop_reason: StopReason, error: str, started_ns: int) -> RunRecord:
        return RunRecord(outcome=ItemStatus.ERRORED, stop_reason=stop_reason, error=error,
                         total_duration_ns=self.clock() - started_ns)

    async def _commit(self, agent_id: str, record: RunRecord, item: BatchItemRef | None, run: AgentRun | None,
                      *, inputs: int = 0) -> Finished:
        if item is not None and run is not None and run.first_token_ns is not None:
            record.first_token_us = item.claimed_us + (run.first_token_ns - run.started_ns) // 1000
        arguments = {"agent_id": agent_id, "record": record, "batch_id": item.batch_id if item else None,
                     "item_id": item.item_id if item else None}
        if item is not None and self.commits is not None:
            commit = await self.commits(agent_id=agent_id, record=record, batch_id=item.batch_id,
                                        item_id=item.item_id)
        elif self.redis_retry is None:
            commit = commit_run(self.store, **arguments)
        else:
            commit = await self.redis_retry.call(commit_run, self.store, **arguments)
        if commit.refused:
            if item is None:
                raise ApprovalConflict(ALREADY_ANSWERED)
            # What the commit recorded instead: the item errored, none of the run's messages kept.
            record = dataclasses.replace(record, outcome=ItemStatus.ERRORED, stop_reason=StopReason.ERROR,
                                         error=ALREADY_ANSWERED, messages=[], blocks=[], block_edits=[])
            return Finished(record=record, commit=commit, inputs=0)
        if item is not None and commit.committed and record.outcome == ItemStatus.ERRORED:
            logger.warning("Request %s of batch %s errored (%s): %s", item.item_id, item.batch_id, record.stop_reason,
                           record.error)
        return Finished(record=record, commit=commit, inputs=inputs)


def _check_fits(agent: dict[str, Any], *, budget: int, system_bytes: int, input_bytes: int) -> None:
    window = agent["llm_config"].get("context_window")
    if system_bytes > budget:
        raise PromptTooLarge(
            f"The agent's system prompt and memory blocks ({system_bytes} characters, about "
            f"{system_bytes // BYTES_PER_TOKEN} tokens) do not fit its context window of {window} tokens; nothing "
            "was sent to the model.", stop_reason=StopReason.CONTEXT_WINDOW_OVERFLOW_IN_SYSTEM_PROMPT)
    if system_bytes + input_bytes > budget:
        raise PromptTooLarge(
            f"The request's input ({input_bytes} characters, about {input_bytes // BYTES_PER_TOKEN} tokens) does "
            f"not fit the agent's context window of {window} tokens next to its system prompt; nothing was sent "
            "to the model.", stop_reason=StopReason.ERROR)


def _content_bytes(message: dict[str, Any]) -> int:
    total = 0
    for part in message.get("content") or []:
        total += len(part.get("text") or "")
        source = part.get("source")
        if isinstance(source, dict):
            total += len(source.get("data") or source.get("url") or "")
    return total
