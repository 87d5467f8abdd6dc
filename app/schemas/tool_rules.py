"""Letta's tool rules, as CreateAgent.tool_rules carries them (discriminated by `type`)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from app.schemas.common import Lenient


class _Rule(Lenient):
    tool_name: str = Field(min_length=1)
    prompt_template: str | None = None


class TerminalRule(_Rule):
    """Calling the tool ends the run (stop_reason `tool_rule`)."""

    type: Literal["exit_loop"]


class InitRule(_Rule):
    """The run's first step may call only these tools, and must call one."""

    type: Literal["run_first"]


class ChildRule(_Rule):
    """Right after the tool, only `children` may be called, and one must be."""

    type: Literal["constrain_child_tools"]
    children: list[str] = Field(min_length=1)


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


ToolRule = Annotated[
    TerminalRule | InitRule | ChildRule | ContinueRule | MaxCountPerStepRule | RequiredBeforeExitRule
    | RequiresApprovalRule,
    Field(discriminator="type"),
]
