"""What a built-in tool is: a name, a JSON Schema for its arguments, and a function of the run's
state. A tool that cannot do what it was asked raises ToolError; the model sees the message."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from app.providers.base import ToolSpec


class ToolError(Exception):
    """The tool ran but could not do what was asked; its message goes back to the model."""


@dataclass
class ToolContext:
    """The state of the run a tool may read or change."""

    #: label -> block (dict with label, value, limit, ...); tools replace blocks whole.
    blocks: dict[str, dict[str, Any]]
    #: the agent's history followed by this run's messages so far (stored Message shape)
    messages: list[dict[str, Any]]
    changed_blocks: set[str]

    def block(self, label: str) -> dict[str, Any]:
        if label not in self.blocks:
            known = ", ".join(sorted(self.blocks)) or "none"
            raise ToolError(f"No memory block with label {label!r}; blocks: {known}.")
        return self.blocks[label]

    def set_block_value(self, label: str, value: str) -> None:
        block = self.block(label)
        if block.get("read_only"):
            raise ToolError(f"Memory block {label!r} is read-only.")
        if len(value) > block["limit"]:
            raise ToolError(f"Edit refused: block {label!r} would hold {len(value)} characters, over its limit "
                            f"of {block['limit']}.")
        self.blocks[label] = {**block, "value": value}
        self.changed_blocks.add(label)


@dataclass(frozen=True)
class Tool:
    name: str
    description: str
    parameters: dict[str, Any]
    run: Callable[[ToolContext, dict[str, Any]], str]

    @property
    def spec(self) -> ToolSpec:
        return ToolSpec(name=self.name, description=self.description, parameters=self.parameters)


_JSON_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,), "integer": (int,), "number": (int, float), "boolean": (bool,), "array": (list,),
    "object": (dict,),
}


def validate_arguments(schema: dict[str, Any], arguments: Any) -> str | None:
    """Why `arguments` do not fit the (flat) object schema of a built-in tool, or None."""
    if not isinstance(arguments, dict):
        return "arguments must be a JSON object"
    properties = schema.get("properties", {})
    missing = [name for name in schema.get("required", []) if name not in arguments]
    if missing:
        return f"missing required argument(s): {', '.join(missing)}"
    for name, value in arguments.items():
        if name not in properties:
            if schema.get("additionalProperties", True) is False:
                return f"unexpected argument {name!r}"
            continue
        expected = properties[name].get("type")
        if expected and not _is_type(value, expected):
            return f"argument {name!r} must be of type {expected}"
        allowed = properties[name].get("items", {}).get("enum") if expected == "array" else None
        if allowed and any(item not in allowed for item in value):
            return f"argument {name!r} items must be among {allowed}"
    return None


def _is_type(value: Any, expected: str) -> bool:
    if isinstance(value, bool) and expected in ("integer", "number"):
        return False
    return isinstance(value, _JSON_TYPES.get(expected, (object,)))
