"""`batchline`: submit, follow and export batches from a terminal, through the REST API
(BATCHLINE_URL, default http://127.0.0.1:8283), with the key in BATCHLINE_API_KEY or else the one a
first start saved in var/api-key. `batchline keys` and `batchline webhook-secret --tenant` go to
Redis directly."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.live import Live

from app.cli.admin import keys_cli, tenant_webhook_secret
from app.cli.client import Api, CliError
from app.cli.jsonl import name_lines, read_requests
from app.cli.monitor import monitor_view
from app.cli.views import (
    agents_table,
    all_requests,
    batch_table,
    batches_table,
    callback_attempts_table,
    summary_table,
    wait_with_progress,
)

#: How often `monitor` refreshes, in seconds (the dashboard's pace).
MONITOR_INTERVAL_S = 2.0

cli = typer.Typer(no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
                  help="Batches of LLM-agent requests on Batchline, from the terminal.")
agents_cli = typer.Typer(no_args_is_help=True, help="Create and list agents.")
cli.add_typer(agents_cli, name="agents")
cli.add_typer(keys_cli, name="keys")
console = Console()
errors = Console(stderr=True)


def _batch_path(batch_id: str) -> str:
    return f"/v1/messages/batches/{batch_id}"


@cli.command()
def submit(
    file: Annotated[Path, typer.Argument(help="JSONL: one LettaBatchRequest object per line.")],
    agent: Annotated[str | None, typer.Option("--agent", help="Agent id for lines that have none.")] = None,
    callback_url: Annotated[str | None, typer.Option("--callback-url", help="Called when the batch ends.")] = None,
    wait: Annotated[bool, typer.Option("--wait", help="Show progress until the batch ends, then a summary.")] = False,
    out: Annotated[Path | None, typer.Option("--out", help="With --wait: write the results (JSONL) here.")] = None,
) -> None:
    """Submit a batch from a JSONL file."""
    api = Api()
    requests, numbers = read_requests(file, agent_id=agent)
    body: dict[str, Any] = {"requests": requests}
    if callback_url is not None:
        body["callback_url"] = callback_url
    try:
        batch = api.call("POST", "/v1/messages/batches", json=body)
    except CliError as exc:
        raise CliError(name_lines(str(exc), file, numbers)) from None
    console.print(f"Batch {batch['id']} submitted with {batch['request_counts']['total']} requests.")
    if not wait:
        if out is not None:
            raise CliError("--out needs --wait (or use `batchline results ID --out FILE` later).")
        return
    finished = wait_with_progress(api, batch["id"], console)
    console.print(summary_table(finished, all_requests(api, batch["id"])))
    if out is not None:
        count = _write_results(api, batch["id"], out)
        console.print(f"Wrote {count} results to {out}.")


@cli.command()
def status(batch_id: Annotated[str, typer.Argument(help="Batch id (job-...).")]) -> None:
    """Show a batch: status and request counts."""
    console.print(batch_table(Api().call("GET", _batch_path(batch_id))))


@cli.command()
def callbacks(batch_id: Annotated[str, typer.Argument(help="Batch id (job-...).")]) -> None:
    """List every delivery attempt of a batch's callback, oldest first."""
    console.print(callback_attempts_table(batch_id, Api().call("GET", f"{_batch_path(batch_id)}/callback-attempts")))


@cli.command(name="webhook-secret")
def webhook_secret(
    tenant: Annotated[str | None, typer.Option(
        "--tenant", help="Another tenant's: read from Redis directly (REDIS_URL or the embedded one), as an admin.",
    )] = None,
) -> None:
    """Print the whsec_ secret that signs your tenant's callbacks (and nothing else)."""
    secret = Api().call("GET", "/v1/webhook-secret")["secret"] if tenant is None else tenant_webhook_secret(tenant)
    sys.stdout.write(secret + "\n")


@cli.command()
def cancel(batch_id: Annotated[str, typer.Argument(help="Batch id (job-...).")]) -> None:
    """Cancel a batch."""
    Api().call("PATCH", f"{_batch_path(batch_id)}/cancel")
    console.print(f"Batch {batch_id} cancelled.")


@cli.command(name="list")
def list_batches(limit: Annotated[int, typer.Option(help="How many, newest first.")] = 20) -> None:
    """List batches, newest first."""
    console.print(batches_table(Api().call("GET", "/v1/messages/batches", params={"limit": limit})))


@cli.command()
def results(
    batch_id: Annotated[str, typer.Argument(help="Batch id (job-...).")],
    out: Annotated[Path | None, typer.Option("--out", help="Write the JSONL here instead of stdout.")] = None,
) -> None:
    """Export a batch's results as JSON Lines, in submission order."""
    api = Api()
    if out is None:
        for line in api.stream_lines(f"{_batch_path(batch_id)}/results"):
            sys.stdout.write(line + "\n")
        return
    count = _write_results(api, batch_id, out)
    errors.print(f"Wrote {count} results to {out}.")


def _write_results(api: Api, batch_id: str, out: Path) -> int:
    count = 0
    try:
        with out.open("w", encoding="utf-8") as sink:
            for line in api.stream_lines(f"{_batch_path(batch_id)}/results"):
                sink.write(line + "\n")
                count += 1
    except OSError as exc:
        raise CliError(f"Cannot write {out}: {exc.strerror or exc}") from None
    return count


@agents_cli.command("create")
def agents_create(
    model: Annotated[str, typer.Option(help='"provider/model", e.g. openai/gpt-4o-mini or simulated/echo.')],
    name: Annotated[str | None, typer.Option(help="A name for the agent.")] = None,
    system: Annotated[str | None, typer.Option(help="The system prompt.")] = None,
) -> None:
    """Create an agent and print its id."""
    body = {key: value for key, value in {"model": model, "name": name, "system": system}.items() if value}
    agent = Api().call("POST", "/v1/agents/", json=body)
    console.print(agent["id"])


@agents_cli.command("list")
def agents_list(limit: Annotated[int, typer.Option(help="How many.")] = 50) -> None:
    """List agents."""
    console.print(agents_table(Api().call("GET", "/v1/agents/", params={"limit": limit})))


@cli.command()
def monitor(once: Annotated[bool, typer.Option("--once", help="Print one snapshot and exit.")] = False) -> None:
    """A live view of queues, workers and batches (Ctrl-C to leave)."""
    api = Api()
    first = _snapshot(api)
    if once:
        console.print(monitor_view(first))
        return
    with Live(monitor_view(first), console=console, screen=False) as live:
        while True:
            time.sleep(MONITOR_INTERVAL_S)
            live.update(monitor_view(_snapshot(api)))


def _snapshot(api: Api) -> dict[str, Any]:
    try:
        return api.call("GET", "/v1/monitor")
    except CliError as exc:
        if "(HTTP 404)" in str(exc):
            raise CliError(f"The Batchline at {api.base_url} has no GET /v1/monitor (a version without "
                           "monitoring?).") from None
        raise


def main() -> None:
    """The console script: failures are one line on stderr and exit status 1, never a traceback."""
    try:
        cli()
    except CliError as exc:
        sys.stderr.write(f"Error: {exc}\n")
        raise SystemExit(1) from None
    except KeyboardInterrupt:
        raise SystemExit(130) from None


__all__ = ["cli", "main"]
