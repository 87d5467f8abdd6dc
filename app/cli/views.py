"""What the CLI shows: rich tables and the live progress of a batch."""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from app.cli.client import Api

#: How often --wait asks for the batch's progress, in seconds.
POLL_INTERVAL_S = 0.5
#: Requests read per page when summarising a finished batch.
SUMMARY_PAGE_LIMIT = 1000
TERMINAL = ("completed", "failed", "cancelled", "expired")


def batch_table(batch: dict[str, Any]) -> Table:
    table = Table(title=f"Batch {batch['id']}", show_header=False)
    for field in ("status", "stop_reason", "created_at", "completed_at", "callback_url", "callback_status_code"):
        if batch.get(field) is not None:
            table.add_row(field, str(batch[field]))
    for name, count in batch["request_counts"].items():
        table.add_row(f"requests {name}", str(count))
    return table


def callback_attempts_table(batch_id: str, answer: dict[str, Any]) -> Table:
    table = Table("#", "sent at", "url", "address", "status", "ms", "webhook-id", title=f"Callback of {batch_id}")
    for attempt in answer["attempts"]:
        outcome = attempt["error"] or str(attempt["status_code"])
        table.add_row(str(attempt["attempt"]), attempt["sent_at"], attempt["url"] or "", attempt["address"] or "",
                      outcome, str(attempt["duration_ms"] if attempt["duration_ms"] is not None else ""),
                      attempt["webhook_id"] or "")
    if not answer["attempts"]:
        table.caption = "No delivery attempt yet."
    return table


def batches_table(batches: list[dict[str, Any]]) -> Table:
    table = Table()
    # whole, to be copied into the next command, however narrow the terminal
    table.add_column("id", no_wrap=True, min_width=max((len(batch["id"]) for batch in batches), default=2))
    for name in ("status", "created", "done/total", "errored"):
        table.add_column(name, no_wrap=True)
    for batch in batches:
        counts = batch["request_counts"]
        done = counts.get("total", 0) - counts.get("pending", 0) - counts.get("running", 0)
        table.add_row(batch["id"], batch["status"], batch["created_at"][:19].replace("T", " "),
                      f"{done}/{counts.get('total', 0)}", str(counts.get("errored", 0)))
    return table


def agents_table(agents: list[dict[str, Any]]) -> Table:
    table = Table("name", "model", "created_at")
    table.add_column("id", no_wrap=True, min_width=max((len(agent["id"]) for agent in agents), default=2))
    for agent in agents:
        model = agent.get("model") or (agent.get("llm_config") or {}).get("model")
        table.add_row(agent.get("name") or "", str(model or ""), agent.get("created_at") or "", agent["id"])
    return table


def wait_with_progress(api: Api, batch_id: str, console: Console) -> dict[str, Any]:
    """Poll the batch until it ends, showing a progress bar of finished requests."""
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console, transient=False) as progress:
        task = progress.add_task(batch_id, total=None)
        while True:
            batch = api.call("GET", f"/v1/messages/batches/{batch_id}")
            counts = batch["request_counts"]
            done = counts["total"] - counts["pending"] - counts["running"]
            progress.update(task, total=counts["total"], completed=done,
                            description=f"{batch_id} {batch['status']}")
            if batch["status"] in TERMINAL:
                return batch
            time.sleep(POLL_INTERVAL_S)


def all_requests(api: Api, batch_id: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    params: dict[str, Any] = {"limit": SUMMARY_PAGE_LIMIT, "order": "asc"}
    while True:
        page = api.call("GET", f"/v1/messages/batches/{batch_id}/requests", params=params)
        found.extend(page)
        if len(page) < SUMMARY_PAGE_LIMIT:
            return found
        params["after"] = page[-1]["id"]


def percentile(values: list[int], fraction: float) -> int | None:
    """Nearest-rank percentile; None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * fraction // 1))
    return ordered[int(rank) - 1]


def summary_table(batch: dict[str, Any], requests: list[dict[str, Any]]) -> Table:
    table = Table("stop reason", "requests", title=f"Batch {batch['status']}")
    reasons = Counter(request.get("stop_reason") or request["status"] for request in requests)
    for reason, count in reasons.most_common():
        table.add_row(reason, str(count))
    ttfts = [request["ttft_ns"] for request in requests if request.get("ttft_ns") is not None]
    for name, fraction in (("ttft p50", 0.5), ("ttft p95", 0.95)):
        value = percentile(ttfts, fraction)
        table.add_row(name, "-" if value is None else f"{value / 1e6:.1f} ms", style="cyan")
    return table
