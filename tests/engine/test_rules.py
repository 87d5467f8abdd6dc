"""Tool rules: what is offered at each step and what a call means."""

from __future__ import annotations

from app.engine.rules import ToolRules

TOOLS = ["search", "append", "reply"]


def test_given_no_rules_then_every_tool_is_offered_and_none_is_required():
    rules = ToolRules([])
    assert rules.allowed(TOOLS) == TOOLS and rules.tool_required() is None and rules.missing_before_exit() == []


def test_given_a_run_first_rule_then_only_it_is_offered_first_and_a_call_is_required_until_one_comes():
    rules = ToolRules([{"type": "run_first", "tool_name": "search"}])
    assert rules.allowed(TOOLS) == ["search"] and "run_first" in rules.tool_required()
    rules.register("search")
    assert rules.allowed(TOOLS) == TOOLS and rules.tool_required() is None


def test_given_a_child_rule_then_after_the_parent_only_children_are_offered_and_required():
    rules = ToolRules([{"type": "constrain_child_tools", "tool_name": "search", "children": ["append", "reply"]}])
    rules.register("search")
    assert rules.allowed(TOOLS) == ["append", "reply"] and "constrain_child_tools" in rules.tool_required()
    rules.register("append")
    assert rules.allowed(TOOLS) == TOOLS and rules.tool_required() is None


def test_given_a_max_count_then_the_tool_is_withdrawn_once_the_count_is_reached():
    rules = ToolRules([{"type": "max_count_per_step", "tool_name": "search", "max_count_limit": 2}])
    rules.register("search")
    assert "search" in rules.allowed(TOOLS)
    rules.register("search")
    assert rules.allowed(TOOLS) == ["append", "reply"]


def test_given_terminal_required_and_approval_rules_then_each_is_reported_for_its_tool():
    rules = ToolRules([{"type": "exit_loop", "tool_name": "reply"},
                       {"type": "required_before_exit", "tool_name": "append"},
                       {"type": "requires_approval", "tool_name": "append"}])
    assert rules.is_terminal("reply") and not rules.is_terminal("search")
    assert rules.needs_approval("append") and not rules.needs_approval("reply")
    assert rules.missing_before_exit() == ["append"]
    rules.register("append")
    assert rules.missing_before_exit() == []
