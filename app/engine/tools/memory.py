"""Memory tools: edit the agent's memory blocks. The change shows in the next step's system
prompt and persists with the run (Letta's core_memory_* and memory_* tools)."""

from __future__ import annotations

from typing import Any

from app.engine.tools.base import Tool, ToolContext, ToolError

_EDITED = ("The memory block {label!r} has been edited; your system prompt now holds the new contents. "
           "Its value is now:\n{value}")


def _label(description: str = "Label of the memory block to edit, e.g. 'human' or 'persona'.") -> dict[str, Any]:
    return {"type": "string", "description": description}


def core_memory_append(ctx: ToolContext, args: dict[str, Any]) -> str:
    block = ctx.block(args["label"])
    value = f"{block['value']}\n{args['content']}" if block["value"] else args["content"]
    ctx.set_block_value(args["label"], value)
    return _EDITED.format(label=args["label"], value=value)


def core_memory_replace(ctx: ToolContext, args: dict[str, Any]) -> str:
    block = ctx.block(args["label"])
    if args["old_content"] not in block["value"]:
        raise ToolError(f"Old content {args['old_content']!r} not found in memory block {args['label']!r}.")
    value = block["value"].replace(args["old_content"], args["new_content"])
    ctx.set_block_value(args["label"], value)
    return _EDITED.format(label=args["label"], value=value)


def memory_replace(ctx: ToolContext, args: dict[str, Any]) -> str:
    block = ctx.block(args["label"])
    occurrences = block["value"].count(args["old_str"])
    if occurrences == 0:
        raise ToolError(f"No replacement was performed: old_str {args['old_str']!r} does not appear verbatim in "
                        f"memory block {args['label']!r}.")
    if occurrences > 1:
        raise ToolError(f"No replacement was performed: old_str {args['old_str']!r} appears {occurrences} times in "
                        f"memory block {args['label']!r}; make it unique.")
    value = block["value"].replace(args["old_str"], args["new_str"])
    ctx.set_block_value(args["label"], value)
    return _EDITED.format(label=args["label"], value=value)


def memory_insert(ctx: ToolContext, args: dict[str, Any]) -> str:
    block = ctx.block(args["label"])
    lines = block["value"].split("\n") if block["value"] else []
    line = args.get("insert_line", -1)
    if line == -1:
        line = len(lines)
    if not 0 <= line <= len(lines):
        raise ToolError(f"Invalid insert_line {line}: it must be within [0, {len(lines)}], or -1 to append.")
    lines[line:line] = args["new_str"].split("\n")
    value = "\n".join(lines)
    ctx.set_block_value(args["label"], value)
    return _EDITED.format(label=args["label"], value=value)


MEMORY_TOOLS = (
    Tool("core_memory_append", "Append content to a memory block (on a new line).", {
        "type": "object", "properties": {"label": _label(), "content": {"type": "string"}},
        "required": ["label", "content"], "additionalProperties": False}, core_memory_append),
    Tool("core_memory_replace", "Replace every occurrence of old_content in a memory block with new_content.", {
        "type": "object",
        "properties": {"label": _label(), "old_content": {"type": "string"}, "new_content": {"type": "string"}},
        "required": ["label", "old_content", "new_content"], "additionalProperties": False}, core_memory_replace),
    Tool("memory_replace", "Replace old_str, which must occur exactly once in the memory block, with new_str.", {
        "type": "object",
        "properties": {"label": _label(), "old_str": {"type": "string"}, "new_str": {"type": "string"}},
        "required": ["label", "old_str", "new_str"], "additionalProperties": False}, memory_replace),
    Tool("memory_insert", "Insert new_str at line insert_line of a memory block (-1 appends at the end).", {
        "type": "object",
        "properties": {"label": _label(), "new_str": {"type": "string"}, "insert_line": {"type": "integer"}},
        "required": ["label", "new_str"], "additionalProperties": False}, memory_insert),
)
