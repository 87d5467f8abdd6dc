"""The monitor's snapshot (GET /v1/monitor) and the Prometheus collector (GET /metrics), both read
from Redis on each request: a web process keeps no numbers of its own, so every web process
answers the same. Queue, worker and model figures are the whole fleet's and carry no ids or
prompts; the batches a snapshot lists are the caller's tenant's only."""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric

from app.ids import iso_from_ns
from app.queues import Queues
from app.store import Store
from app.vocabulary import TERMINAL_BATCH_STATUSES, StopReason

#: Minutes of throughput the snapshot returns.
THROUGHPUT_MINUTES = 60
#: Running batches, and other recent batches, the snapshot lists at most.
RUNNING_BATCHES_MAX = 100
RECENT_BATCHES_MAX = 20


def _iso_us(micros: Any) -> str | None:
    return None if micros in (None, "") else iso_from_ns(int(micros) * 1000)


def percentile(samples: list[float], fraction: float) -> float | None:
    """Nearest-rank percentile; None without samples."""
    if not samples:
        return None
    ordered = sorted(samples)
    return round(ordered[max(0, math.ceil(fraction * len(ordered)) - 1)], 6)


def per_minute(minutes: list[tuple[int, int, int]], now_s: float, window: int) -> float:
    """Requests ended per minute over the last `window` minutes: the current (partial) minute,
    the whole ones before it, and the share of the oldest one still inside the window."""
    counts = [finished for _, finished, _ in minutes]
    current, earlier = counts[-1], counts[-window:-1]
    oldest = counts[-window - 1] if len(counts) > window else 0
    elapsed = (now_s % 60) / 60
    return round((current + sum(earlier) + oldest * (1 - elapsed)) / window, 3)


def batch_view(batch: dict[str, Any], now_s: float) -> dict[str, Any]:
    counts = batch["request_counts"]
    ended = counts["total"] - counts["pending"] - counts["running"]
    elapsed_s = max(0.0, now_s - batch["created_us"] / 1_000_000)
    throughput = round(ended / elapsed_s, 3) if ended and elapsed_s > 0 else None
    remaining = counts["pending"] + counts["running"]
    eta = round(remaining / throughput, 1) if throughput and batch["status"] == "running" else None
    return {"id": batch["id"], "status": batch["status"], "created_at": batch["created_at"],
            "request_counts": counts, "throughput_per_s": throughput, "eta_s": eta}


def worker_view(fields: dict[str, str]) -> dict[str, Any]:
    return {"id": fields["id"], "host": fields.get("host", ""), "pid": int(fields.get("pid") or 0),
            "threads": int(fields.get("threads") or 0), "items_in_flight": int(fields.get("items_in_flight") or 0),
            "streams_open": int(fields.get("streams_open") or 0), "started_at": _iso_us(fields.get("started_us")),
            "last_seen_at": _iso_us(fields.get("seen_us"))}


def snapshot(store: Store, queues: Queues, *, tenant: str | None) -> dict[str, Any]:
    """The fleet's figures, and the batches of `tenant` only; none for an anonymous caller of a
    public monitor (`tenant` None), who sees queues, workers and models but no batch."""
    workers = [worker_view(fields) for fields in store.monitor.workers()]
    now_s, minutes = store.monitor.minutes(last=THROUGHPUT_MINUTES)
    ttft = store.monitor.recent_ttft_s()
    running: list[dict[str, Any]] = []
    recent: list[dict[str, Any]] = []
    if tenant is not None:
        running, recent, _ = store.monitor.batches(tenant=tenant, running_limit=RUNNING_BATCHES_MAX,
                                                   recent_limit=RECENT_BATCHES_MAX)
    last = store.sweeps.last()
    return {
        "generated_at": iso_from_ns(int(now_s * 1e9)),
        "queues": [vars(stats) for stats in queues.stats()],
        "workers": workers,
        "models": {
            "streams_in_flight": sum(worker["streams_open"] for worker in workers),
            "completed_per_min_1m": per_minute(minutes, now_s, 1),
            "completed_per_min_5m": per_minute(minutes, now_s, 5),
            "ttft_p50_s": percentile(ttft, 0.5),
            "ttft_p95_s": percentile(ttft, 0.95),
        },
        "throughput": [{"minute": iso_from_ns(minute * 60 * 1_000_000_000), "finished": finished, "failed": failed}
                       for minute, finished, failed in minutes],
        "batches": [batch_view(batch, now_s) for batch in running],
        "recent_batches": [batch_view(batch, now_s) for batch in recent],
        "reconciler": {
            "last_sweep_at": _iso_us(last.get("finished_us")),
            "duration_ms": float(last["duration_ms"]) if last.get("duration_ms") else None,
            "last": {name: int(value) for name, value in last.items()
                     if name not in ("owner", "finished_us", "duration_ms") and value.lstrip("-").isdigit()},
            "totals": store.sweeps.totals(),
        },
    }


class FleetCollector:
    """Reads every number on each scrape (prometheus_client's custom-collector protocol)."""

    def __init__(self, *, store: Store, queues: Queues) -> None:
        self.store = store
        self.queues = queues

    def collect(self) -> Iterator[Metric]:
        counters = self.store.monitor.counters()
        created = CounterMetricFamily("batchline_batches_created", "Batches created.")
        created.add_metric([], counters.get("batches_created_total", 0))
        yield created
        yield _labelled(counters, "batches_finished", "status", sorted(TERMINAL_BATCH_STATUSES),
                        "Batches that reached a terminal status.")
        yield _labelled(counters, "items_finished", "stop_reason", [*map(str, StopReason), "expired"],
                        "Batch requests that ended, by stop reason (expired requests have none: 'expired').")
        yield _labelled(counters, "callback_attempts", "outcome", ["delivered", "failed"],
                        "Completion callback delivery attempts.")
        histograms = self.store.monitor.histograms()
        for key, name, doc in (("ttft", "batchline_item_ttft_seconds", "Time to first token of batch requests."),
                               ("duration", "batchline_item_duration_seconds", "Duration of batch requests.")):
            histogram = histograms[key]
            family = HistogramMetricFamily(name, doc)
            family.add_metric([], [(_bound(le), count) for le, count in histogram.buckets], histogram.sum_s)
            yield family
        messages = GaugeMetricFamily("batchline_queue_messages", "Dramatiq messages by queue and state.",
                                     labels=["queue", "state"])
        latency = GaugeMetricFamily("batchline_queue_latency_seconds",
                                    "How long the oldest ready message of the queue has waited (0 when none).",
                                    labels=["queue"])
        for stats in self.queues.stats():
            for state in ("ready", "delayed", "in_flight", "dead"):
                messages.add_metric([stats.name, state], getattr(stats, state))
            latency.add_metric([stats.name], stats.latency_s or 0.0)
        yield messages
        yield latency
        workers = self.store.monitor.workers()
        yield GaugeMetricFamily("batchline_workers_alive", "Worker processes with a live heartbeat.",
                                value=len(workers))
        yield GaugeMetricFamily("batchline_streams_in_flight", "Model stream slots in use across the workers.",
                                value=sum(int(worker.get("streams_open") or 0) for worker in workers))


def _labelled(counters: dict[str, int], name: str, label: str, known: list[str], doc: str) -> CounterMetricFamily:
    """Every known label value (0 until seen), plus any other value recorded."""
    prefix = f"{name}_total|{label}="
    values = {value: 0 for value in known}
    values.update({field.removeprefix(prefix): count for field, count in counters.items() if field.startswith(prefix)})
    family = CounterMetricFamily(f"batchline_{name}", doc, labels=[label])
    for value, count in values.items():
        family.add_metric([value], count)
    return family


def _bound(le: float) -> str:
    return "+Inf" if le == float("inf") else repr(float(le))
