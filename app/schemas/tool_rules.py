"""Letta's tool rules, as CreateAgent.tool_rules carries them (discriminated by `type`)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Discriminator, Field, Tag

from app.schemas.common import Lenient
from app.schemas.limits import MAX_TOOLS, Description, Label


class _Rule(Lenient):
    tool_name: Label = Field(min_length=1)
    prompt_template: Description | None = None


class TerminalRule(_Rule):
    """Calling the tool ends the run (stop_reason `tool_rule`)."""

    type: Literal["exit_loop"]


class InitRule(_Rule):
    """The run's first step may call only these tools, and must call one."""

    type: Literal["run_first"]


class ChildRule(_Rule):
    """Right after the tool, only `children` may be called, and one must be."""

    type: Literal["constrain_child_tools"]
    children: list[Label] = Field(min_length=1, max_length=MAX_TOOLS)


class ContinueRule(_Rule):
    """After the tool the loop goes on (the default after any tool call; stated explicitly)."""

    type: Literal["continue_loop"]


class MaxCountPerStepRule(_Rule):
    """The tool is offered until it has been called `max_count_limit` times in the run."""

    type: Literal["max_count_per_step"]
    max_count_limit: int = Field(ge=1)


class RequiredBeforeExitRule(_Rule):
    """The run may not end until the tool has been called."""

    type: Literal["required_before_exit"]


class RequiresApprovalRule(_Rule):
    """A call of the tool pauses the run until the client approves or denies it."""

    type: Literal["requires_approval"]


_RULES = (TerminalRule, InitRule, ChildRule, ContinueRule, MaxCountPerStepRule, RequiredBeforeExitRule,
          RequiresApprovalRule)
_KINDS = tuple(rule.model_fields["type"].annotation.__args__[0] for rule in _RULES)


def _kind(value: Any) -> str | None:
    kind = value.get("type") if isinstance(value, dict) else getattr(value, "type", None)
    return kind if kind in _KINDS else None


# A custom discriminator: pydantic's own error for an unknown tag repeats the tag sent.
ToolRule = Annotated[
    Annotated[TerminalRule, Tag("exit_loop")] | Annotated[InitRule, Tag("run_first")]
    | Annotated[ChildRule, Tag("constrain_child_tools")] | Annotated[ContinueRule, Tag("continue_loop")]
    | Annotated[MaxCountPerStepRule, Tag("max_count_per_step")]
    | Annotated[RequiredBeforeExitRule, Tag("required_before_exit")]
    | Annotated[RequiresApprovalRule, Tag("requires_approval")],
    Discriminator(_kind, custom_error_type="tool_rule_type",
                  custom_error_message=f'"type" must be one of {", ".join(map(repr, _KINDS))}'),
]
