"""Batchline's configuration: environment variables (and a `.env` file), read once per process.

Names without the `BATCHLINE_` prefix are the conventional ones other tools share (`REDIS_URL`,
the provider keys); everything of Batchline's own is `BATCHLINE_<FIELD>`. The port is
`BATCHLINE_PORT`, not `PORT`: honcho sets `PORT` for every process it starts (5000 unless told
otherwise), so `PORT` cannot tell "the user chose a port" from "honcho's default".
Build it in a factory (`create_app`, the broker module), never at import of a library module.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from app.embedded_redis import DEFAULT_APPENDFSYNC
from app.model_limits import ModelLimit, check_keys

#: Default port of the web process (Letta's).
DEFAULT_PORT = 8283
#: Default number of batch items one Dramatiq message carries; each item of a chunk runs
#: concurrently on the worker's event loop.
DEFAULT_CHUNK_SIZE = 50
#: Default completion window of a batch (OpenAI's and Anthropic's is 24 h too).
DEFAULT_COMPLETION_WINDOW_S = 24 * 3600
MAX_COMPLETION_WINDOW_S = 7 * 24 * 3600 - 3600


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="BATCHLINE_",
        env_file=".env",
        extra="ignore",
        populate_by_name=True,
        # A rejected value may be a secret: never quote it in the error.
        hide_input_in_errors=True,
    )

    #: Read by the Procfile's web line (`${BATCHLINE_PORT:-8283}`); kept here so it is validated
    #: and listed with the other settings.
    port: int = Field(DEFAULT_PORT, ge=1, le=65535)
    #: None means: start (or join) the embedded redis-server under `var_dir`.
    redis_url: str | None = Field(None, validation_alias="REDIS_URL")
    #: The Redis that holds Dramatiq's queues; None means the same Redis as the state. A queue of
    #: its own takes the messages' traffic off the state's Redis (docs/scaling.md).
    broker_url: str | None = None
    var_dir: Path = Path("var")
    #: The embedded Redis's AOF fsync policy (ignored with `REDIS_URL`): `always` fsyncs before
    #: every reply, so nothing acknowledged is lost even on a power loss; `everysec` can lose the
    #: last second of acknowledged batches and commits then (docs/durability.md).
    redis_appendfsync: Literal["always", "everysec", "no"] = DEFAULT_APPENDFSYNC

    openai_base_url: str = Field("https://api.openai.com/v1", validation_alias="OPENAI_BASE_URL")
    openai_api_key: SecretStr | None = Field(None, validation_alias="OPENAI_API_KEY")
    anthropic_base_url: str = Field("https://api.anthropic.com", validation_alias="ANTHROPIC_BASE_URL")
    anthropic_api_key: SecretStr | None = Field(None, validation_alias="ANTHROPIC_API_KEY")

    #: The `simulated/` model (demos and benchmarks only): delay before the first token and
    #: between tokens.
    simulated_ttft_ms: float = 200.0
    simulated_token_ms: float = 20.0

    #: Provider calls: attempts for 429/5xx/network errors, backoff, and the cap on a
    #: provider's Retry-After that we are willing to wait.
    llm_max_attempts: int = Field(4, ge=1)
    llm_backoff_base_s: float = 1.0
    llm_backoff_max_s: float = 30.0
    llm_retry_after_max_s: float = 60.0
    llm_connect_timeout_s: float = 10.0
    #: Longest silence allowed inside a stream before the call counts as failed.
    llm_read_timeout_s: float = 300.0
    #: Fleet-wide limits per model or endpoint (JSON: key -> max_streams, requests_per_minute,
    #: tokens_per_minute), kept through Redis by every worker and web process (app/model_limits.py).
    #: Decoded by its validator, not by pydantic-settings (whose JSON error is a traceback, not a settings error).
    model_limits: Annotated[dict[str, ModelLimit], NoDecode] = Field(default_factory=dict)

    max_steps_default: int = 50
    #: The largest `max_steps` a request may ask for (larger is a 422).
    max_steps_ceiling: int = Field(1000, ge=1)
    #: An item that runs longer than this ends with stop_reason `error`.
    item_timeout_s: float = 3600.0
    chunk_size: int = Field(DEFAULT_CHUNK_SIZE, ge=1, le=1000)
    #: Chunk messages one batch keeps in the queue at once (enqueued and not finished); each chunk
    #: that finishes enqueues the batch's next, so running batches take turns. 0 (the default):
    #: the worker threads of the live workers (their heartbeats), so that one batch alone keeps
    #: every thread busy and a later batch waits for one round of the running batches' chunks.
    chunks_in_flight_per_batch: int = Field(0, ge=0)
    #: A request that has waited this long for a model's capacity (BATCHLINE_MODEL_LIMITS) before
    #: its first model call is given back and its chunk retried this much later, so that waiting
    #: holds no worker thread (0: wait on the thread).
    model_wait_release_s: float = Field(10.0, ge=0)
    #: Model streams one worker process keeps open at once (across all its chunks).
    worker_max_streams: int = Field(1000, ge=1)
    #: How long an item's claim stays valid without renewal; a dead worker's items are
    #: taken over by a redelivered message after this.
    item_lease_s: float = Field(30.0, gt=0)
    #: A worker process silent this long is dead: its unacked messages go back to the queue
    #: (Dramatiq's default is 60 s; item leases make an early takeover safe).
    worker_heartbeat_timeout_s: float = 30.0
    #: At most just under 7 days: the expiry is a delayed Dramatiq message, which the Redis
    #: broker refuses beyond that.
    completion_window_s: float = Field(DEFAULT_COMPLETION_WINDOW_S, gt=0, le=MAX_COMPLETION_WINDOW_S)
    #: Agent history sent to the model is cut to this many most recent messages, and to a byte
    #: budget: the agent's context window (about 4 bytes a token) less its system prompt and the
    #: request's input, and at most `history_max_bytes`. A message larger than that is never
    #: loaded; the model reads a notice in its place.
    history_max_messages: int = Field(200, ge=0)
    history_max_bytes: int = Field(2 * 1024 * 1024, ge=0)
    #: A worker process close to this resident memory starts no new items until running ones
    #: end (one at a time still runs, so nothing waits forever).
    worker_memory_budget_mb: int = Field(2048, ge=64)
    #: How often the reconciler sweeps the active batches (one worker process at a time):
    #: expiries, lost messages and callbacks are repaired within about this long.
    sweep_interval_s: float = Field(15.0, gt=0)
    #: How often a worker re-reads the status of the batches it runs, in case a stop published
    #: on Redis pub/sub was missed (a reconnect).
    stop_poll_s: float = Field(2.0, gt=0)

    #: `off` lets every caller in as the default tenant: only for a machine nobody else can reach.
    auth: Literal["on", "off"] = "on"
    #: Open `/metrics` and `GET /v1/monitor` to callers without a key (queue, worker and model
    #: figures only: such a caller is shown no batch).
    monitor_public: bool = False

    #: Calls one API key may make per minute over all `/v1` routes, counted across every web
    #: process (0: no limit).
    rate_limit_per_minute: int = Field(6000, ge=0)
    #: Batch requests one API key may submit per hour: a batch of N requests counts N (0: no limit).
    batch_requests_per_hour: int = Field(1_000_000, ge=0)
    #: How long an `Idempotency-Key` keeps answering with the batch it created (per tenant).
    idempotency_ttl_s: int = Field(24 * 3600, ge=1)

    webhook_secret: SecretStr | None = None
    callback_timeout_s: float = 10.0
    callback_max_attempts: int = Field(8, ge=1)
    callback_allow_private: bool = False

    #: Hard ceiling of a request body (Letta's): larger is 413.
    max_body_bytes: int = 256 * 1024 * 1024

    #: The nice value (0-19) worker processes run at, so that busy workers leave the CPU to the
    #: web process first (API latency); 0 leaves their priority alone (app/priority.py).
    worker_nice: int = Field(10, ge=0, le=19)

    @field_validator("model_limits", mode="before")
    @classmethod
    def _decode_model_limits(cls, value: object) -> object:
        if not isinstance(value, str):
            return value
        try:
            decoded = json.loads(value) if value.strip() else None
        except ValueError:
            raise ValueError("is not valid JSON") from None
        return {} if decoded is None else decoded  # empty or null: no limits

    @field_validator("model_limits")
    @classmethod
    def _check_model_limit_keys(cls, value: dict[str, ModelLimit]) -> dict[str, ModelLimit]:
        return check_keys(value)

    @field_validator("openai_api_key", "anthropic_api_key", "webhook_secret", mode="before")
    @classmethod
    def _clean_secret(cls, value: object) -> object:
        """Secrets mounted from files often end in a newline, which would make an illegal HTTP
        header (whose error message would then quote the key)."""
        if isinstance(value, SecretStr):
            value = value.get_secret_value()
        if isinstance(value, str):
            value = value.strip()
            if any(ord(char) < 32 or ord(char) == 127 for char in value):
                raise ValueError("contains control characters")
            return value or None
        return value


def invalid_settings_message(error: ValidationError) -> str:
    """One line naming the invalid settings, never their values (they may be secrets)."""
    names = ", ".join(_setting_name([str(part) for part in detail["loc"]]) for detail in error.errors())
    return f"Invalid settings: {names}; check the environment and .env."


def _setting_name(loc: list[str]) -> str:
    """The variable a user sets: `REDIS_URL` and the provider keys keep their own names."""
    first = loc[0] if loc[0].isupper() else "BATCHLINE_" + loc[0].upper()
    return ".".join([first, *loc[1:]])
