"""The worker process's item runtime: every batch item of every chunk this process holds runs as
a task on Dramatiq's one event loop, so one process keeps hundreds of model streams open while
each chunk occupies a single worker thread.

It claims each item under a lease (renewed while the item runs), listens for cancellations on
Redis pub/sub (with a poll as a fallback), closes the streams of stopped batches mid-way, and
gives items back when the worker shuts down so a redelivered chunk runs them elsewhere.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import threading
import time
import uuid
from dataclasses import dataclass

import dramatiq
import redis
from dramatiq.asyncio import get_event_loop_thread
from dramatiq.middleware import Middleware

from app.engine.commit import commit_run
from app.engine.run import AgentRun, RunFactory
from app.providers import ProviderRegistry, make_http_client
from app.schemas.batches import LettaBatchRequest
from app.settings import Settings
from app.store import Store, connect, keys
from app.store.batches import STOPPED_STATUSES, TERMINAL_STATUSES
from app.store.runs import Claim, RunRecord
from app.tasks import FINALIZE_BATCH, TaskQueue

logger = logging.getLogger(__name__)

#: A second SIGTERM this soon after the first is the same stop request delivered twice.
DUPLICATE_SIGNAL_WINDOW_S = 2.0
#: Longest wait between two claims of an item another owner holds.
BUSY_POLL_MAX_S = 5.0
#: How often in-flight batches are checked for a stop the pub/sub message may have missed.
STOP_POLL_S = 2.0

_runtime: WorkerRuntime | None = None


def current_runtime() -> WorkerRuntime:
    if _runtime is None:
        raise RuntimeError("The item runtime is not running: is the ItemRuntime middleware on the broker?")
    return _runtime


class ItemsReleased(Exception):
    """The worker is shutting down and gave this chunk's unfinished items back; retry the chunk."""


@dataclass
class InFlight:
    batch_id: str
    task: asyncio.Task


class WorkerRuntime:
    def __init__(self, *, settings: Settings, redis_url: str, tasks: TaskQueue) -> None:
        self.settings = settings
        self.store = Store(client=connect(redis_url))
        self.tasks = tasks
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.in_flight: dict[str, InFlight] = {}
        self.stopping: set[str] = set()
        self.shutting_down = False
        self._closed = False
        self._background: list[asyncio.Task] = []

    async def start(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.http = make_http_client(self.settings)
        self.runs = RunFactory(settings=self.settings, store=self.store,
                               providers=ProviderRegistry(settings=self.settings, client=self.http))
        self.streams = asyncio.Semaphore(self.settings.worker_max_streams)
        self._background = [asyncio.create_task(self._renew_leases()), asyncio.create_task(self._poll_stops())]
        threading.Thread(target=self._listen_for_stops, name="batchline-stop-listener", daemon=True).start()

    def begin_shutdown(self) -> None:
        self.shutting_down = True
        for item_id, flight in list(self.in_flight.items()):
            if item_id not in self.stopping:
                flight.task.cancel()

    async def close(self) -> None:
        self._closed = True
        for task in self._background:
            task.cancel()
        await self.http.aclose()

    # -- chunks and items ------------------------------------------------------------------

    async def run_chunk(self, batch_id: str, start: int, stop: int) -> None:
        if self.store.batches.fields(batch_id, "status") == [None]:
            return  # discarded before it started
        # Even in a stopped batch every item is claimed: the claim settles unstarted items and
        # hands over items a dead worker left running, which nothing else would end.
        item_ids = self.store.batches.item_ids(batch_id, start=start, stop=stop)
        async with asyncio.TaskGroup() as group:
            runs = [group.create_task(self.run_item(batch_id, item_id)) for item_id in item_ids]
        if not all(run.result() for run in runs):
            raise ItemsReleased(f"worker shutting down: items of batch {batch_id} [{start}..{stop}] given back")
        self.finalize_if_settled(batch_id)

    async def run_item(self, batch_id: str, item_id: str) -> bool:
        """See one item to its end; False when it was given back because the worker is stopping."""
        while True:
            async with self.streams:
                if self.shutting_down:
                    return False
                claim = self.store.runs.claim(batch_id=batch_id, item_id=item_id, owner=self.owner,
                                              lease_s=self.settings.item_lease_s)
                if claim.action == "run":
                    return await self._run_claimed(batch_id, item_id, claim)
            if claim.action == "stop_running":
                status = self._batch_status(batch_id)
                self._commit(batch_id, item_id, self.store.runs.load_item(item_id)["agent_id"],
                             RunRecord(outcome=status, stop_reason=_stop_reason(status)), claim, None)
            if claim.action != "busy":
                return True
            # Another owner holds it. Acking this message now could strand the item if that owner
            # dies, so wait until it ends the item or its lease lapses and this claim takes over.
            await asyncio.sleep(min(self.settings.item_lease_s / 3, BUSY_POLL_MAX_S))

    async def _run_claimed(self, batch_id: str, item_id: str, claim: Claim) -> bool:
        try:
            return await self._run_owned(batch_id, item_id, claim)
        except BaseException:
            # Whatever failed after the claim (Redis, a bug): give the item back, so the retried
            # chunk runs it at once instead of waiting out a lease nobody renews.
            with contextlib.suppress(redis.RedisError):
                self.store.runs.release(item_id=item_id, owner=self.owner)
            raise

    async def _run_owned(self, batch_id: str, item_id: str, claim: Claim) -> bool:
        started_ns = time.monotonic_ns()
        item = self.store.runs.load_item(item_id)
        agent = self.store.agents.get(item["agent_id"])
        if agent is None:
            record = RunRecord(outcome="errored", stop_reason="error",
                               error=f"Agent {item['agent_id']} was deleted before this request ran.")
            self._commit(batch_id, item_id, item["agent_id"], record, claim, None)
            return True
        run = self.runs.new(agent, LettaBatchRequest.model_validate_json(item["request"]),
                            batch_item_id=item_id, started_ns=started_ns)
        task = asyncio.current_task()
        self.in_flight[item_id] = InFlight(batch_id, task)
        try:
            await run.execute(timeout_s=self.settings.item_timeout_s)
            record = run.record()
        except asyncio.CancelledError:
            if item_id not in self.stopping:
                self.store.runs.release(item_id=item_id, owner=self.owner)
                task.uncancel()
                return False
            task.uncancel()
            status = self._batch_status(batch_id)
            record = run.record(outcome=status, stop_reason=_stop_reason(status))
        finally:
            self.in_flight.pop(item_id, None)
            self.stopping.discard(item_id)
        self._commit(batch_id, item_id, agent["id"], record, claim, run)
        return True

    def _commit(self, batch_id: str, item_id: str, agent_id: str, record: RunRecord, claim: Claim,
                run: AgentRun | None) -> None:
        if run is not None and run.first_token_ns is not None:
            record.first_token_us = claim.now_us + (run.first_token_ns - run.started_ns) // 1000
        commit = commit_run(self.store, agent_id=agent_id, record=record, batch_id=batch_id, item_id=item_id)
        if commit.committed and commit.remaining == 0:
            self.tasks.send(FINALIZE_BATCH, batch_id)

    def finalize_if_settled(self, batch_id: str) -> None:
        """Enqueue finalize when every item has ended but the batch was not finalized or its
        callback not queued (the commit that ended the last item may have died before it could)."""
        status, pending, running, callback_url, queued = self.store.batches.fields(
            batch_id, "status", "pending", "running", "callback_url", "callback_queued")
        if status is None or int(pending or 0) + int(running or 0) > 0:
            return
        if status not in TERMINAL_STATUSES or (callback_url and not queued):
            self.tasks.send(FINALIZE_BATCH, batch_id)

    def _batch_status(self, batch_id: str) -> str:
        [status] = self.store.batches.fields(batch_id, "status")
        return status if status in STOPPED_STATUSES else "cancelled"

    # -- stop signals and leases -----------------------------------------------------------

    def stop_batch_locally(self, batch_id: str) -> None:
        """Close the streams of this batch's items that run here (on the event loop thread)."""
        for item_id, flight in list(self.in_flight.items()):
            if flight.batch_id == batch_id and item_id not in self.stopping:
                self.stopping.add(item_id)
                flight.task.cancel()

    def _listen_for_stops(self) -> None:
        while not self._closed:
            try:
                pubsub = self.store.client.pubsub(ignore_subscribe_messages=True)
                pubsub.subscribe(keys.STOP_CHANNEL)
                while not self._closed:
                    message = pubsub.get_message(timeout=1.0)
                    if message and message["type"] == "message":
                        self.loop.call_soon_threadsafe(self.stop_batch_locally, message["data"])
                pubsub.close()
            except (redis.RedisError, OSError):
                logger.warning("Stop listener lost Redis; reconnecting in 1 s (the poll covers the gap)")
                time.sleep(1.0)
            except RuntimeError:  # the event loop closed under us: the runtime is gone
                return

    async def _poll_stops(self) -> None:
        while True:
            await asyncio.sleep(STOP_POLL_S)
            batch_ids = sorted({flight.batch_id for flight in self.in_flight.values()})
            if not batch_ids:
                continue
            with contextlib.suppress(redis.RedisError):
                statuses = self.store.batches.statuses(batch_ids)
                for batch_id, status in zip(batch_ids, statuses, strict=True):
                    if status in STOPPED_STATUSES:
                        self.stop_batch_locally(batch_id)

    async def _renew_leases(self) -> None:
        while True:
            await asyncio.sleep(self.settings.item_lease_s / 3)
            try:
                self.store.runs.renew(item_ids=list(self.in_flight), owner=self.owner,
                                      lease_s=self.settings.item_lease_s)
            except redis.RedisError:
                logger.warning("Could not renew item leases; retrying", exc_info=True)


def _absorb_duplicate_sigterm() -> None:
    """Process managers (honcho, systemd with KillMode=control-group) signal the whole process
    group, and the dramatiq main process forwards the same SIGTERM to its workers: a worker gets
    it twice at once and takes the second as "kill now", skipping the graceful stop that gives
    items back. A second SIGTERM within a moment of the first is the same request; ignore it."""
    previous = signal.getsignal(signal.SIGTERM)
    if not callable(previous):
        return
    first_at: float | None = None

    def handler(signum: int, frame: object) -> None:
        nonlocal first_at
        now = time.monotonic()
        if first_at is not None and now - first_at < DUPLICATE_SIGNAL_WINDOW_S:
            return
        first_at = first_at or now
        previous(signum, frame)

    signal.signal(signal.SIGTERM, handler)


def _stop_reason(status: str) -> str | None:
    return "cancelled" if status == "cancelled" else None


class ItemRuntime(Middleware):
    """Starts the worker runtime on Dramatiq's event loop after boot and stops it at shutdown."""

    def __init__(self, *, settings: Settings, redis_url: str) -> None:
        self.settings = settings
        self.redis_url = redis_url

    def after_process_boot(self, broker: dramatiq.Broker) -> None:
        _absorb_duplicate_sigterm()

    def after_worker_boot(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        global _runtime
        runtime = WorkerRuntime(settings=self.settings, redis_url=self.redis_url, tasks=TaskQueue(broker=broker))
        get_event_loop_thread().run_coroutine(runtime.start())
        _runtime = runtime

    def before_worker_shutdown(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        if _runtime is not None:
            _runtime.loop.call_soon_threadsafe(_runtime.begin_shutdown)

    def after_worker_shutdown(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        if _runtime is not None:
            get_event_loop_thread().run_coroutine(_runtime.close())
