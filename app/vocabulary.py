"""The words of Batchline's state: batch statuses, item statuses and stop reasons, spelled once.

They are `StrEnum`s, so each member is the very string stored in Redis and returned by the API
(`BatchStatus.RUNNING == "running"`); a typo becomes an AttributeError instead of a new state.
The Lua scripts in `app/lua/` spell the same words; `tests/test_vocabulary.py` checks they match.
"""

from __future__ import annotations

from enum import StrEnum


class BatchStatus(StrEnum):
    #: From the moment the create call returns until the batch ends (as on Letta, OpenAI and
    #: Anthropic: a batch is "in progress" at once).
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"
    EXPIRED = "expired"


class ItemStatus(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    ERRORED = "errored"
    CANCELLED = "cancelled"
    EXPIRED = "expired"


class StopReason(StrEnum):
    """Why a request (or a batch) ended: the values of Letta's `StopReasonType` that Batchline uses."""

    END_TURN = "end_turn"
    MAX_STEPS = "max_steps"
    TOOL_RULE = "tool_rule"
    REQUIRES_APPROVAL = "requires_approval"
    NO_TOOL_CALL = "no_tool_call"
    INVALID_TOOL_CALL = "invalid_tool_call"
    INVALID_LLM_RESPONSE = "invalid_llm_response"
    LLM_API_ERROR = "llm_api_error"
    ERROR = "error"
    CANCELLED = "cancelled"
    #: The agent's system prompt and memory blocks alone exceed its context window.
    CONTEXT_WINDOW_OVERFLOW_IN_SYSTEM_PROMPT = "context_window_overflow_in_system_prompt"


TERMINAL_BATCH_STATUSES = frozenset({BatchStatus.COMPLETED, BatchStatus.FAILED, BatchStatus.CANCELLED,
                                     BatchStatus.EXPIRED})
#: Terminal statuses a batch reaches by being stopped rather than by finishing its items.
STOPPED_BATCH_STATUSES = frozenset({BatchStatus.CANCELLED, BatchStatus.EXPIRED})
UNFINISHED_ITEM_STATUSES = frozenset({ItemStatus.PENDING, ItemStatus.RUNNING})
#: Stop reasons of a run that ended as designed; any other ends its item `errored`.
SUCCESS_STOP_REASONS = frozenset({StopReason.END_TURN, StopReason.MAX_STEPS, StopReason.TOOL_RULE,
                                  StopReason.REQUIRES_APPROVAL})
#: The live counters of a batch, in the order of the API's `request_counts`.
REQUEST_COUNTERS = ("total", *(status.value for status in ItemStatus))


def item_status_for_stop(batch_status: str) -> ItemStatus:
    """The status an unfinished item takes when its batch is stopped (cancelled or expired)."""
    return ItemStatus.EXPIRED if batch_status == BatchStatus.EXPIRED else ItemStatus.CANCELLED


def stop_reason_for_stop(batch_status: str) -> StopReason | None:
    """An item stopped by a cancel says `cancelled`; one stopped by expiry has no stop reason."""
    return StopReason.CANCELLED if batch_status == BatchStatus.CANCELLED else None


class WaitingFor(StrEnum):
    """What a running item waits for, shown as `waiting` in `GET .../requests`."""

    #: A fleet-wide model limit (BATCHLINE_MODEL_LIMITS) is reached, or the provider asked the
    #: fleet to pause with a 429's Retry-After.
    MODEL_CAPACITY = "model_capacity"
