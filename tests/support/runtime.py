"""The worker runtime driven directly in tests (no Dramatiq), on the test's real Redis: build one,
run work on its event loop between its start and its close, run a chunk to its end."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from actors.runtime import WorkerRuntime
from app.schemas.agents import CreateAgent
from app.settings import Settings
from app.store import Store


class RecordingTasks:
    """The runtime's task queue: records what it would send instead of sending it."""

    def __init__(self) -> None:
        self.sent: list[tuple[Any, ...]] = []

    def send(self, actor_name: str, *args: Any, delay_ms: int | None = None) -> None:
        self.sent.append((actor_name, *args))


def worker_runtime(redis_url: str, var_dir: Path, *, tasks: Any = None, **settings: Any) -> WorkerRuntime:
    return WorkerRuntime(settings=Settings(redis_url=redis_url, var_dir=var_dir, _env_file=None, **settings),
                         redis_url=redis_url, tasks=tasks or RecordingTasks())


def run_in_runtime(runtime: WorkerRuntime, work: Callable[[], Awaitable[Any]], *,
                   on_start: Callable[[], Any] | None = None) -> None:
    """Start the runtime, call `on_start`, await `work()`, and close the runtime."""

    async def go() -> None:
        await runtime.start()
        try:
            if on_start:
                on_start()
            await work()
        finally:
            runtime.shutting_down = True
            await runtime.close()

    asyncio.run(go())


def run_chunk(runtime: WorkerRuntime, batch_id: str, start: int = 0, stop: int = 0, *,
              on_start: Callable[[], Any] | None = None) -> None:
    """Start the runtime, run one chunk of the batch to its end, and close the runtime."""
    run_in_runtime(runtime, lambda: runtime.run_chunk(batch_id, start, stop), on_start=on_start)


def openai_agent(store: Store, model: Any, *, context_window: int = 64_000) -> str:
    """An agent whose model is the fake OpenAI server `model`."""
    return store.agents.create(CreateAgent(llm_config={
        "model": "gpt-4o-mini", "model_endpoint_type": "openai", "model_endpoint": model.base_url,
        "context_window": context_window}))["id"]
