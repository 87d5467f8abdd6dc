"""conversation_search: find past messages of the agent's history by text."""

from __future__ import annotations

import json
from typing import Any

from app.engine.prompt import text_of
from app.engine.tools.base import Tool, ToolContext

DEFAULT_LIMIT = 10


def conversation_search(ctx: ToolContext, args: dict[str, Any]) -> str:
    query = args.get("query", "").lower()
    roles = set(args.get("roles") or ("user", "assistant"))
    limit = max(1, min(int(args.get("limit") or DEFAULT_LIMIT), 100))
    results = []
    for message in reversed(ctx.messages):
        text = text_of(message)
        if message["role"] in roles and text and query in text.lower():
            results.append({"timestamp": message["created_at"], "role": message["role"], "content": text})
            if len(results) == limit:
                break
    summary = f"Showing {len(results)} results:" if results else "No results found."
    return json.dumps({"message": summary, "results": results})


CONVERSATION_SEARCH = Tool(
    "conversation_search",
    "Search the conversation history for messages containing the query text (case-insensitive), newest first.",
    {"type": "object", "properties": {
        "query": {"type": "string", "description": "Text to look for."},
        "roles": {"type": "array", "items": {"type": "string", "enum": ["user", "assistant"]}},
        "limit": {"type": "integer", "description": f"Most results to return (default {DEFAULT_LIMIT})."},
    }, "required": ["query"], "additionalProperties": False},
    conversation_search,
)
