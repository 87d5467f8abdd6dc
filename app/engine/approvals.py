"""Runs paused with `requires_approval`: finding the pending request in an agent's history, and
matching a client's ApprovalCreate (or tool returns) to it."""

from __future__ import annotations

from typing import Any

from app.providers.base import ToolCall
from app.schemas.messages import ApprovalCreate, ApprovalReturn, ToolReturnCreate, ToolReturnItem

#: What the model reads when the client denies a tool call (Letta's wording).
DENIAL_TEMPLATE = "Error: request to call tool denied. User reason: {reason}"

Decision = ApprovalReturn | ToolReturnItem


class ApprovalMismatch(ValueError):
    """The client's answer does not fit the pending approval request."""


def pending_approval(history: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The agent's approval request still waiting for an answer, if any: the latest
    approval-role message, when it is a request (it has tool_calls) rather than a response."""
    for message in reversed(history):
        if message["role"] == "approval":
            return message if message.get("tool_calls") else None
    return None


def approval_conflict(history: list[dict[str, Any]], answer: ApprovalCreate | ToolReturnCreate | None) -> str | None:
    """Why a request cannot run now: an approval answer with nothing pending or that does not fit
    the pending calls, or an ordinary request while the agent waits for an approval. None when
    it can."""
    pending = pending_approval(history)
    if answer is not None and pending is None:
        return "No tool call of this agent is awaiting approval."
    if answer is not None:
        try:
            decisions_for(answer, pending_calls(pending))
        except ApprovalMismatch as exc:
            return str(exc)
    if answer is None and pending is not None:
        names = ", ".join(call.name for call in pending_calls(pending))
        return (f"The agent is waiting for approval of {names}; send an approval (type \"approval\") or "
                "tool_return message first.")
    return None


def pending_calls(request_message: dict[str, Any]) -> list[ToolCall]:
    return [ToolCall(id=call["id"], name=call["function"]["name"], arguments=call["function"]["arguments"])
            for call in request_message["tool_calls"]]


def decisions_for(answer: ApprovalCreate | ToolReturnCreate, calls: list[ToolCall]) -> dict[str, Decision]:
    """tool_call_id -> decision, for exactly the pending calls; ApprovalMismatch otherwise."""
    if isinstance(answer, ToolReturnCreate):
        given: list[Decision] = list(answer.tool_returns)
    elif answer.approvals:
        given = list(answer.approvals)
    else:  # deprecated single decision: it answers every pending call
        given = [ApprovalReturn(tool_call_id=call.id, approve=bool(answer.approve), reason=answer.reason)
                 for call in calls]
    decisions: dict[str, Decision] = {}
    for decision in given:
        tool_call_id = decision.tool_call_id
        if tool_call_id.startswith("message-") and len(calls) == 1:
            tool_call_id = calls[0].id  # Letta's legacy form names the request message instead
        decisions[tool_call_id] = decision
    expected = [call.id for call in calls]
    if set(decisions) != set(expected):
        raise ApprovalMismatch(
            f"The approval must answer exactly the pending tool call(s) {expected}; it answered {sorted(decisions)}.")
    return decisions
