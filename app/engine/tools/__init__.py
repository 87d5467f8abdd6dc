"""Built-in server-side tools. They run inside the worker on the run's own state (memory blocks,
history); none executes arbitrary code."""

from __future__ import annotations

from app.engine.tools.base import Tool, ToolContext, ToolError, validate_arguments
from app.engine.tools.memory import MEMORY_TOOLS
from app.engine.tools.messaging import SEND_MESSAGE
from app.engine.tools.search import CONVERSATION_SEARCH

BUILTIN_TOOLS: dict[str, Tool] = {tool.name: tool for tool in (*MEMORY_TOOLS, CONVERSATION_SEARCH, SEND_MESSAGE)}
#: Tools whose effect is an edit of memory blocks (replayed when a concurrent run edited first).
MEMORY_TOOL_NAMES = frozenset(tool.name for tool in MEMORY_TOOLS)

__all__ = ["BUILTIN_TOOLS", "MEMORY_TOOL_NAMES", "Tool", "ToolContext", "ToolError", "validate_arguments"]
