"""Fleet-wide limits per model (`BATCHLINE_MODEL_LIMITS`): what a limit is, and which one a model
call meets.

The setting is a JSON object whose keys name what a limit applies to:

- a model handle, `openai/gpt-4o-mini`: that model's calls share one pool;
- an endpoint URL, `http://vllm.internal:8000/v1`: every call to that base URL (an agent's
  `llm_config.model_endpoint`, else the provider's configured base URL) shares one pool;
- `<provider>/*`, `*`: a default applied to EACH model it matches, every model its own pool
  (provider quotas are per model).

A call meets the first that matches, in that order: handle, endpoint, `<provider>/*`, `*`. A
model that matches nothing has no limit and costs no Redis call. An entry with no figure
(`{}`) still pauses its model for the fleet when the provider answers 429 with Retry-After.
"""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict, Field

#: The rate windows' length: the limits are per minute.
RATE_WINDOW_S = 60.0


class ModelLimit(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    #: Streams open at once across the fleet.
    max_streams: int | None = Field(None, ge=1)
    #: Calls started in any sliding 60 s window (retries included: the provider counts them).
    requests_per_minute: int | None = Field(None, ge=1)
    #: Tokens in any sliding 60 s window: estimated before the call, corrected by its usage after.
    tokens_per_minute: int | None = Field(None, ge=1)


@dataclass(frozen=True)
class Bucket:
    """The capacity one call draws on."""

    #: Names the pool in Redis: the handle or endpoint that matched, or for a wildcard the model's handle.
    name: str
    limit: ModelLimit


def _is_endpoint(key: str) -> bool:
    return key.lower().startswith(("http://", "https://"))


def normalize_endpoint(url: str) -> str:
    """Scheme and host are case-insensitive (`HTTP://vLLM:8000/v1` is `http://vllm:8000/v1`); a path is not.
    Credentials in the URL (`https://user:token@host`) are dropped: the result names a pool in
    Redis keys and log lines, and the same server is one pool whoever logs in."""
    scheme, sep, rest = url.strip().rstrip("/").partition("://")
    host, slash, path = rest.partition("/")
    host = host.rpartition("@")[2]
    return f"{scheme.lower()}{sep}{host.lower()}{slash}{path}"


def check_keys(table: dict[str, ModelLimit]) -> dict[str, ModelLimit]:
    """Refuse keys that could never match, so a typo is an error at start, not a silent no-limit."""
    from app.providers import SUPPORTED_PROVIDERS  # (app.providers imports this module)

    for key in table:
        provider, slash, model = key.partition("/")
        # A '*' matches only as the whole model ('<provider>/*') or the whole key: 'openai/gpt-4*' never would.
        if key == "*" or _is_endpoint(key) or (slash and provider in SUPPORTED_PROVIDERS and model.strip()
                                               and ("*" not in model or model == "*")):
            continue
        raise ValueError(f"the key {key!r} is not a model handle ('openai/gpt-4o-mini', provider one of "
                         f"{', '.join(SUPPORTED_PROVIDERS)}), '<provider>/*', '*' or an endpoint URL (http:// or "
                         "https://)")
    return table


class LimitTable:
    """The parsed setting, ready to match calls."""

    def __init__(self, table: dict[str, ModelLimit]) -> None:
        self._handles = {key: limit for key, limit in table.items()
                         if not _is_endpoint(key) and not key.endswith("*")}
        self._endpoints = {normalize_endpoint(key): limit for key, limit in table.items() if _is_endpoint(key)}
        self._wildcards = {key: limit for key, limit in table.items() if key.endswith("*") and not _is_endpoint(key)}

    def __bool__(self) -> bool:
        return bool(self._handles or self._endpoints or self._wildcards)

    def match(self, handle: str, endpoint: str | None) -> Bucket | None:
        if (limit := self._handles.get(handle)) is not None:
            return Bucket(handle, limit)
        if endpoint and (limit := self._endpoints.get(normalize_endpoint(endpoint))) is not None:
            return Bucket(normalize_endpoint(endpoint), limit)
        provider = handle.partition("/")[0]
        limit = self._wildcards.get(f"{provider}/*") or self._wildcards.get("*")
        return None if limit is None else Bucket(handle, limit)
