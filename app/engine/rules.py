"""The tool rules of one run: which tools are offered at each step, whether a tool call is
required, and what a call means for the loop (terminal, needs approval)."""

from __future__ import annotations

from collections import Counter
from typing import Any


class ToolRules:
    def __init__(self, rules: list[dict[str, Any]]) -> None:
        def names(kind: str) -> set[str]:
            return {rule["tool_name"] for rule in rules if rule["type"] == kind}

        self.init = names("run_first")
        self.terminal = names("exit_loop")
        self.required_before_exit = names("required_before_exit")
        self.approval = names("requires_approval")
        self.children = {rule["tool_name"]: set(rule["children"]) for rule in rules
                         if rule["type"] == "constrain_child_tools"}
        self.max_counts = {rule["tool_name"]: rule["max_count_limit"] for rule in rules
                           if rule["type"] == "max_count_per_step"}
        self.called: Counter[str] = Counter()
        self.last_tool: str | None = None

    def allowed(self, tools: list[str]) -> list[str]:
        """The tools the model may call now, in the agent's order."""
        allowed = set(tools)
        if self.last_tool is None and self.init:
            allowed &= self.init
        elif self.last_tool in self.children:
            allowed &= self.children[self.last_tool]
        allowed -= {name for name, limit in self.max_counts.items() if self.called[name] >= limit}
        return [name for name in tools if name in allowed]

    def tool_required(self) -> str | None:
        """Why a tool call is required at this step, or None."""
        if self.last_tool is None and self.init:
            return f"the agent's run_first rule requires one of {sorted(self.init)} first"
        if self.last_tool in self.children:
            return f"the constrain_child_tools rule requires one of {sorted(self.children[self.last_tool])} " \
                   f"after {self.last_tool}"
        return None

    def missing_before_exit(self) -> list[str]:
        return sorted(name for name in self.required_before_exit if not self.called[name])

    def register(self, tool: str) -> None:
        self.called[tool] += 1
        self.last_tool = tool

    def is_terminal(self, tool: str) -> bool:
        return tool in self.terminal

    def needs_approval(self, tool: str) -> bool:
        return tool in self.approval
