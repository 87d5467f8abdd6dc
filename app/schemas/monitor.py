"""Shapes of the monitor API: queues, workers, models, batches, the reconciler, dead letters."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from app.queues import DEAD_LETTERS_MAX, QUEUES
from app.schemas.batches import RequestCounts
from app.schemas.common import StrictQuery

QueueName = Literal[QUEUES]  # type: ignore[valid-type]


class QueueView(BaseModel):
    name: str = Field(description="The Dramatiq queue: batches (start, finalize), items (chunks), callbacks.")
    ready: int = Field(description="Messages waiting for a worker.")
    delayed: int = Field(description="Messages waiting out a retry delay.")
    in_flight: int = Field(description="Messages a worker fetched and has not finished.")
    dead: int = Field(description="Dead letters: messages that failed every retry.")
    latency_s: float | None = Field(description="How long the oldest ready message has waited; null when none "
                                                "waits.")


class WorkerView(BaseModel):
    id: str = Field(description="The worker process's owner id (host:pid:random).")
    host: str
    pid: int
    threads: int = Field(description="Dramatiq worker threads of the process.")
    items_in_flight: int = Field(description="Batch requests this process runs now.")
    streams_open: int = Field(description="Stream slots in use (of BATCHLINE_WORKER_MAX_STREAMS).")
    started_at: str
    last_seen_at: str


class ModelsView(BaseModel):
    streams_in_flight: int = Field(description="Stream slots in use across the live workers.")
    completed_per_min_1m: float = Field(description="Requests ended per minute over the last minute.")
    completed_per_min_5m: float = Field(description="Requests ended per minute over the last 5 minutes.")
    ttft_p50_s: float | None = Field(description="Median time to first token of the last 1000 requests.")
    ttft_p95_s: float | None


class MinuteView(BaseModel):
    minute: str = Field(description="Start of the minute (UTC).")
    finished: int = Field(description="Requests that ended in that minute, whatever their outcome.")
    failed: int = Field(description="Of those, the ones that errored.")


class BatchView(BaseModel):
    id: str
    status: str
    created_at: str
    request_counts: RequestCounts
    throughput_per_s: float | None = Field(description="Requests ended per second since the batch was created.")
    eta_s: float | None = Field(description="Seconds until every request ends at that pace (running batches).")


class ReconcilerView(BaseModel):
    last_sweep_at: str | None
    duration_ms: float | None
    last: dict[str, int] = Field(description="What the last sweep visited and repaired.")
    totals: dict[str, int] = Field(description="What all sweeps repaired.")


class Monitor(BaseModel):
    generated_at: str
    queues: list[QueueView]
    workers: list[WorkerView]
    models: ModelsView
    throughput: list[MinuteView] = Field(description="The last 60 minutes, oldest first.")
    batches: list[BatchView] = Field(description="Running batches, newest first (at most 100).")
    recent_batches: list[BatchView] = Field(description="The 20 most recent batches that are not running.")
    reconciler: ReconcilerView


class DeadLetter(BaseModel):
    id: str = Field(description="The broker's message id.")
    queue: str
    actor: str | None
    args: list = Field(description="The actor's arguments (ids and positions).")
    failed_at: str
    retries: int
    batch_id: str | None
    error: str | None = Field(description="Type of the exception of the last failed attempt, when recorded.")


class DeadLetters(BaseModel):
    dead_letters: list[DeadLetter]


class DeadLettersQuery(StrictQuery):
    queue: QueueName | None = None
    limit: int = Field(100, ge=1, le=DEAD_LETTERS_MAX)


class QueueFilter(StrictQuery):
    queue: QueueName | None = None


class DeadLetterPath(BaseModel):
    message_id: str = Field(max_length=100)


class Requeued(BaseModel):
    requeued: list[str]


class Discarded(BaseModel):
    discarded: list[str]
