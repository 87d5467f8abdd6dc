"""Agents as clients create them (CreateAgent) and as the API returns them (AgentState)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from app.engine.tools import BUILTIN_TOOLS
from app.providers import SUPPORTED_PROVIDERS, UnknownProvider, split_handle
from app.schemas.common import Lenient, PageQuery
from app.schemas.limits import (
    MAX_BLOCK_CHARS,
    MAX_MEMORY_BLOCKS,
    MAX_TAGS,
    MAX_TOOLS,
    MAX_URL_CHARS,
    Description,
    Label,
    Metadata,
    Name,
    Text,
)
from app.schemas.tool_rules import ToolRule

#: Context window assumed when neither the request nor a known model says otherwise.
DEFAULT_CONTEXT_WINDOW = 128_000
#: Letta's default block size limit (characters).
DEFAULT_BLOCK_LIMIT = 20_000
DEFAULT_SYSTEM_PROMPT = (
    "You are a helpful assistant. Your memory blocks below hold what you know about yourself and the "
    "person you talk to; keep them in mind when you answer."
)


class LlmConfig(Lenient):
    model: Name = Field(min_length=1)
    model_endpoint_type: Label
    model_endpoint: str | None = Field(None, max_length=MAX_URL_CHARS)
    context_window: int = Field(DEFAULT_CONTEXT_WINDOW, gt=0)
    temperature: float | None = Field(None, ge=0, le=2)
    max_tokens: int | None = Field(None, gt=0)
    enable_reasoner: bool | None = None

    @field_validator("model_endpoint_type")
    @classmethod
    def _supported(cls, value: str) -> str:
        if value not in SUPPORTED_PROVIDERS:
            raise ValueError(f"unsupported provider; use one of {', '.join(SUPPORTED_PROVIDERS)}")
        return value


class BlockCreate(Lenient):
    label: Label = Field(min_length=1)
    value: str = Field("", max_length=MAX_BLOCK_CHARS)
    limit: int = Field(DEFAULT_BLOCK_LIMIT, gt=0, le=MAX_BLOCK_CHARS)
    description: Description | None = None

    @model_validator(mode="after")
    def _fits(self) -> BlockCreate:
        if len(self.value) > self.limit:
            raise ValueError(f"the value holds {len(self.value)} characters, over the block's limit {self.limit}")
        return self


class CreateAgent(Lenient):
    name: Name | None = None
    system: Text | None = None
    description: Description | None = None
    model: Name | None = Field(None, description='"provider/model", e.g. "openai/gpt-4o-mini"')
    llm_config: LlmConfig | None = None
    context_window_limit: int | None = Field(None, gt=0)
    memory_blocks: list[BlockCreate] = Field(default_factory=list, max_length=MAX_MEMORY_BLOCKS)
    tools: list[Label] = Field(default_factory=list, max_length=MAX_TOOLS,
                               description=f"Built-in tools: {', '.join(BUILTIN_TOOLS)}")
    tool_rules: list[ToolRule] = Field(default_factory=list, max_length=MAX_TOOLS)
    tags: list[Label] = Field(default_factory=list, max_length=MAX_TAGS)
    metadata: Metadata | None = None

    @field_validator("memory_blocks", "tools", "tool_rules", "tags", mode="before")
    @classmethod
    def _null_is_empty(cls, value: Any) -> Any:
        return [] if value is None else value

    @field_validator("tools")
    @classmethod
    def _known_tools(cls, value: list[str]) -> list[str]:
        unknown = [str(index) for index, name in enumerate(value) if name not in BUILTIN_TOOLS]
        if unknown:
            which = f"item {unknown[0]} is not a built-in tool" if len(unknown) == 1 else \
                f"items {', '.join(unknown)} are not built-in tools"
            raise ValueError(f"{which}; built-in tools are {', '.join(BUILTIN_TOOLS)}")
        return list(dict.fromkeys(value))

    @field_validator("model")
    @classmethod
    def _known_provider(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                split_handle(value)
            except UnknownProvider:
                raise ValueError(f"must look like '<provider>/<model>' with provider one of "
                                 f"{', '.join(SUPPORTED_PROVIDERS)}") from None
        return value

    @model_validator(mode="after")
    def _has_a_model(self) -> CreateAgent:
        if self.model is None and self.llm_config is None:
            raise ValueError('give "model" as "provider/model" (e.g. "openai/gpt-4o-mini") or an llm_config')
        labels = [block.label for block in self.memory_blocks]
        if len(labels) != len(set(labels)):
            raise ValueError("memory_blocks labels must be unique")
        for index, rule in enumerate(self.tool_rules):
            for name in [rule.tool_name, *getattr(rule, "children", [])]:
                if name not in self.tools:
                    raise ValueError(f"tool_rules[{index}] names a tool that is not one of the agent's tools")
        return self

    def resolved_llm_config(self) -> dict[str, Any]:
        """The llm_config to store: the handle decides provider and model; llm_config adds details."""
        config = self.llm_config.model_dump(exclude_none=True) if self.llm_config else {}
        if self.model is not None:
            provider, model = split_handle(self.model)
            config.update(model=model, model_endpoint_type=provider)
        config.setdefault("context_window", self.context_window_limit or DEFAULT_CONTEXT_WINDOW)
        return config


class AgentListQuery(PageQuery):
    name: Name | None = Field(None, description="Only the agents of this exact name.")


class AgentMessagesQuery(PageQuery):
    """The history page, shown as a request with these options would show its messages."""

    use_assistant_message: bool = True
    assistant_message_tool_name: Label = "send_message"
    assistant_message_tool_kwarg: Label = "message"


class AgentState(BaseModel):
    """What the agent routes return (documented; extra fields follow Letta's AgentState)."""

    model_config = ConfigDict(extra="allow")

    id: str
    agent_type: str = "letta_v1_agent"
    name: str
    system: str
    model: str
    llm_config: dict[str, Any]
    blocks: list[dict[str, Any]]
    memory: dict[str, Any]
    tools: list[dict[str, Any]]
    tool_rules: list[dict[str, Any]]
    sources: list[Any]
    tags: list[str]
    metadata: dict[str, Any] | None
    created_at: str
    message_ids: list[str]
