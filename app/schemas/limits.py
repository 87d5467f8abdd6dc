"""Bounds on what one field of a request may hold, so that no single field can make the service
allocate without limit (a list of a million empty objects costs far more once validated than
its bytes). The whole body stays under BATCHLINE_MAX_BODY_BYTES (256 MiB) and 64 levels of
nesting (app.api.body_guard); docs/api.md lists these limits in its table.

A violation is a 422 naming the field; no message here repeats what the client sent.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

from pydantic import AfterValidator, Field, StringConstraints

#: An id a client sends (agent, batch, message, tool call, cursor), in characters. Batchline's
#: own ids are a prefix and a UUID, under 50; Letta's are alike.
MAX_ID_CHARS = 200
#: A short identifier: block label, tool name, tag, message type, option name, in characters.
MAX_LABEL_CHARS = 200
#: A name (agent, message sender) or model handle, in characters.
MAX_NAME_CHARS = 500
#: A URL the service is given (model endpoint), in characters.
MAX_URL_CHARS = 2048
#: A description, approval reason or prompt template, in characters.
MAX_DESCRIPTION_CHARS = 100_000
#: One message text (a string `content` or `input`, one text part, a tool return, a system
#: prompt), in characters: about 2 million tokens, more than any model's context window takes.
MAX_TEXT_CHARS = 8_000_000
#: A memory block's value and `limit`, in characters (Letta's default limit is 20,000).
MAX_BLOCK_CHARS = 1_000_000
#: Inline image data (base64), in characters: 28 million encode 21 MB, over every provider's
#: own per-image limit (OpenAI 20 MB, Anthropic 5 MB).
MAX_IMAGE_DATA_CHARS = 28_000_000

#: Messages in one request.
MAX_MESSAGES_PER_REQUEST = 1000
#: Parts (text and images) of one message's content.
MAX_CONTENT_PARTS = 500
#: Memory blocks of one agent.
MAX_MEMORY_BLOCKS = 100
#: Names in one list of tools (an agent's tools, a rule's children), tool rules of one agent,
#: client tools of one request, approvals or tool returns of one message (OpenAI takes 128 tools).
MAX_TOOLS = 128
#: Tags of one agent, and message types in `include_return_message_types`.
MAX_TAGS = 100
#: Lines of a client tool's stdout or stderr.
MAX_OUTPUT_LINES = 10_000

#: Keys of a `metadata` object (top level).
MAX_METADATA_KEYS = 100
#: A `metadata` key, in characters.
MAX_METADATA_KEY_CHARS = 200
#: A `metadata` object once serialised as compact JSON, in bytes (UTF-8).
MAX_METADATA_BYTES = 64 * 1024
#: A client tool's `parameters` (its JSON schema) once serialised as compact JSON, in bytes.
MAX_TOOL_SCHEMA_BYTES = 256 * 1024


def _json_bytes(value: Any) -> int:
    return len(json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode())


def _bounded_object(*, max_keys: int | None, max_key_chars: int, max_bytes: int) -> AfterValidator:
    """A JSON object of at most `max_keys` keys of at most `max_key_chars`, `max_bytes` in all.
    Checked after parsing, with messages that never name a key (a key is the client's input)."""

    def check(value: dict[str, Any] | None) -> dict[str, Any] | None:
        if value is None:
            return None
        if max_keys is not None and len(value) > max_keys:
            raise ValueError(f"must have at most {max_keys} keys, not {len(value)}")
        if any(len(key) > max_key_chars for key in value):
            raise ValueError(f"keys must be at most {max_key_chars} characters long")
        if (size := _json_bytes(value)) > max_bytes:
            raise ValueError(f"must serialise to at most {max_bytes} bytes of JSON, not {size}")
        return value

    return AfterValidator(check)


Id = Annotated[str, StringConstraints(max_length=MAX_ID_CHARS)]
Label = Annotated[str, StringConstraints(max_length=MAX_LABEL_CHARS)]
Name = Annotated[str, StringConstraints(max_length=MAX_NAME_CHARS)]
Description = Annotated[str, StringConstraints(max_length=MAX_DESCRIPTION_CHARS)]
Text = Annotated[str, StringConstraints(max_length=MAX_TEXT_CHARS)]
Metadata = Annotated[dict[str, Any], _bounded_object(max_keys=MAX_METADATA_KEYS, max_key_chars=MAX_METADATA_KEY_CHARS,
                                                     max_bytes=MAX_METADATA_BYTES)]
#: A JSON schema: only its size is bounded (its keys are JSON Schema's own words).
ToolSchema = Annotated[dict[str, Any], _bounded_object(max_keys=None, max_key_chars=MAX_LABEL_CHARS,
                                                       max_bytes=MAX_TOOL_SCHEMA_BYTES)]
OutputLines = Annotated[list[Text], Field(max_length=MAX_OUTPUT_LINES)]
