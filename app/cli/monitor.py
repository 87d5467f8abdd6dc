"""`batchline monitor`: a live terminal view of GET /v1/monitor (queues, workers, batches)."""

from __future__ import annotations

from typing import Any

from rich.console import Group
from rich.table import Table


def _num(value: Any, unit: str = "", digits: int = 1) -> str:
    if value is None:
        return "-"
    return f"{value:.{digits}f}{unit}" if isinstance(value, float) else f"{value}{unit}"


def monitor_view(snapshot: dict[str, Any]) -> Group:
    queues = Table("queue", "ready", "delayed", "in flight", "dead", "latency", title="Queues")
    for queue in snapshot.get("queues", []):
        queues.add_row(queue["name"], *(str(queue.get(k, 0)) for k in ("ready", "delayed", "in_flight", "dead")),
                       _num(queue.get("latency_s"), " s"))
    workers = Table("worker", "host", "pid", "threads", "items", "streams", "last seen", title="Workers")
    for worker in snapshot.get("workers", []):
        workers.add_row(worker["id"], str(worker.get("host", "")), str(worker.get("pid", "")),
                        *(str(worker.get(k, "")) for k in ("threads", "items_in_flight", "streams_open")),
                        str(worker.get("last_seen_at", "")))
    models = snapshot.get("models") or {}
    model = Table("streams", "done/min 1m", "done/min 5m", "ttft p50", "ttft p95", title="Models")
    model.add_row(str(models.get("streams_in_flight", "-")), _num(models.get("completed_per_min_1m")),
                  _num(models.get("completed_per_min_5m")), _num(models.get("ttft_p50_s"), " s", 3),
                  _num(models.get("ttft_p95_s"), " s", 3))
    shown = [*snapshot.get("batches", []), *snapshot.get("recent_batches", [])]
    batches = Table(title="Batches")
    # ids whole, to be copied into `batchline status`, however narrow the terminal
    batches.add_column("batch", no_wrap=True, min_width=max((len(batch["id"]) for batch in shown), default=5))
    for name in ("status", "done", "total", "per s", "eta"):
        batches.add_column(name)
    for batch in shown:
        counts = batch.get("request_counts") or {}
        done = counts.get("total", 0) - counts.get("pending", 0) - counts.get("running", 0)
        batches.add_row(batch["id"], batch["status"], str(done), str(counts.get("total", "")),
                        _num(batch.get("throughput_per_s")), _num(batch.get("eta_s"), " s", 0))
    return Group(f"Batchline monitor at {snapshot.get('generated_at', '?')}", queues, workers, model, batches)
