"""The worker process's item runtime: every batch item of every chunk this process holds runs as
a task on Dramatiq's one event loop, so one process keeps hundreds of model streams open while
each chunk occupies a single worker thread.

Each item is claimed under a lease (actors/leases.py keeps it alive), admitted within the
process's memory budget (actors/memory.py), run through the engine's RequestRunner, and stopped
mid-stream when its batch is cancelled or expires (actors/stops.py). Items still running when the
worker shuts down are given back, so a redelivered chunk runs them elsewhere at once. A failure
stays with its item: a Redis outage is waited out (a finished run keeps its result and commits
when Redis is back), anything else ends that item with `error`, and its siblings run on (an item
whose error cannot be recorded either fails its chunk, which is retried). The
process also takes its turn at the reconciler's sweep (actors/reconciler.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
import uuid
from dataclasses import dataclass

import redis

from actors.batching import ClaimBatcher, CommitBatcher
from actors.fanout import ChunkFeeder
from actors.heartbeat import forget, send_heartbeats
from actors.item_ends import ItemEnd, ItemsReleased, ItemsUnsettled, ItemsWaiting
from actors.leases import renew_leases
from actors.memory import MemoryBudget
from actors.reconciler import Reconciler, sweep_periodically
from actors.slots import StreamSlot
from actors.stops import StopListener
from app.engine.history import context_budget_bytes
from app.engine.runner import BatchItemRef, Finished, RequestRunner
from app.logs import bind_item
from app.outage import outage
from app.providers import ProviderRegistry, make_http_client
from app.providers.limits import CapacityRelease, ModelLimiter
from app.redis_retry import UNAVAILABLE, RedisRetry
from app.schemas.batches import LettaBatchRequest
from app.settings import Settings
from app.store import Store, connect
from app.store.item_start import ItemStart
from app.store.runs import Claim, StoredItem
from app.tasks import FINALIZE_BATCH, TaskQueue
from app.vocabulary import STOPPED_BATCH_STATUSES, BatchStatus

logger = logging.getLogger(__name__)

#: Longest wait between two claims of an item another owner holds.
BUSY_POLL_MAX_S = 5.0
#: How often a process that lost Redis checks whether it is back.
REDIS_PROBE_S = 1.0

_runtime: WorkerRuntime | None = None


def current_runtime() -> WorkerRuntime:
    if _runtime is None:
        raise RuntimeError("The item runtime is not running: is the RuntimeMiddleware on the broker?")
    return _runtime


def set_runtime(runtime: WorkerRuntime | None) -> None:
    global _runtime
    _runtime = runtime


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
        self._background: list[asyncio.Task] = []
        self.threads = 0  # the Dramatiq worker's thread count, for the heartbeat

    async def start(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.http = make_http_client(self.settings)
        self.redis_retry = RedisRetry(give_up=lambda: self.shutting_down)
        self.commits = CommitBatcher(store=self.store, owner=self.owner, redis_retry=self.redis_retry)
        self.runner = RequestRunner(settings=self.settings, store=self.store,
                                    providers=ProviderRegistry(settings=self.settings, client=self.http,
                                                               limiter=ModelLimiter.from_settings(
                                                                   self.settings, self.store.model_limits)),
                                    redis_retry=self.redis_retry, commits=self.commits.commit)
        self.claims = ClaimBatcher(store=self.store, owner=self.owner, lease_s=self.settings.item_lease_s,
                                   history=self.runner.history)
        self.feeder = ChunkFeeder(store=self.store, tasks=self.tasks, chunk_size=self.settings.chunk_size,
                                  chunks_in_flight_per_batch=self.settings.chunks_in_flight_per_batch,
                                  own_threads=lambda: self.threads)
        self.reconciler = Reconciler(store=self.store, tasks=self.tasks,
                                     callback_max_attempts=self.settings.callback_max_attempts,
                                     chunk_budget=self.feeder.budget)
        self.streams = asyncio.Semaphore(self.settings.worker_max_streams)
        self.memory = MemoryBudget(budget_bytes=self.settings.worker_memory_budget_mb * 1024 * 1024)
        self.stops = StopListener(store=self.store, loop=self.loop, on_stop=self.stop_batch_locally,
                                  running_batches=lambda: {flight.batch_id for flight in self.in_flight.values()},
                                  poll_s=self.settings.stop_poll_s)
        self._background = [
            self.stops.start(),
            asyncio.create_task(renew_leases(store=self.store, owner=self.owner, lease_s=self.settings.item_lease_s,
                                             item_ids=lambda: list(self.in_flight))),
            asyncio.create_task(sweep_periodically(self.reconciler, owner=self.owner,
                                                   interval_s=self.settings.sweep_interval_s)),
            asyncio.create_task(self._watch_redis()),
            asyncio.create_task(send_heartbeats(
                store=self.store, owner=self.owner, threads=lambda: self.threads,
                items_in_flight=lambda: len(self.in_flight),
                streams_open=lambda: self.settings.worker_max_streams - self.streams._value)),
        ]

    def begin_shutdown(self) -> None:
        self.shutting_down = True
        for item_id, flight in list(self.in_flight.items()):
            if item_id not in self.stopping:
                flight.task.cancel()

    async def close(self) -> None:
        self.stops.close()
        for task in self._background:
            task.cancel()
        await asyncio.to_thread(forget, self.store, self.owner)
        await self.http.aclose()

    # -- chunks and items ------------------------------------------------------------------

    async def run_chunk(self, batch_id: str, start: int, stop: int) -> None:
        # A chunk taken just as Redis went away waits for it, like its items do.
        chunk = await self.redis_retry.call(self.store.starts.load_chunk, batch_id, start=start, stop=stop)
        if chunk is None:
            return  # the batch is gone
        # Even in a stopped batch every item is claimed: the claim settles unstarted items and
        # hands over items a dead worker left running, which nothing else would end.
        item_ids, items = chunk
        async with asyncio.TaskGroup() as group:
            runs = [group.create_task(self.run_item(batch_id, item_id, items.get(item_id))) for item_id in item_ids]
        ends = {run.result() for run in runs}
        if ItemEnd.RELEASED in ends:
            raise ItemsReleased(f"worker shutting down: items of batch {batch_id} [{start}..{stop}] given back")
        if ItemEnd.WAITING in ends:
            raise ItemsWaiting(f"items of batch {batch_id} [{start}..{stop}] wait for model capacity; retried in "
                               f"{self.settings.model_wait_release_s:g} s",
                               delay_ms=int(self.settings.model_wait_release_s * 1000))
        if ItemEnd.UNSETTLED in ends:
            raise ItemsUnsettled(f"items of batch {batch_id} [{start}..{stop}] could not be ended; the chunk is "
                                 "retried")
        # Out of flight and the batch's next chunk in, atomically: a duplicate finish frees no place.
        await self.redis_retry.call(self.feeder.feed, batch_id, finished_start=start)
        if await self.redis_retry.call(self.store.progress.needs_finalize, batch_id):
            self._send_finalize(batch_id)

    async def run_item(self, batch_id: str, item_id: str, stored: StoredItem | None = None) -> ItemEnd:
        """See one item to its end, or give it back (the worker is stopping, or it waits for model capacity).
        Never raises: whatever goes wrong stays with this item. With the item's `stored` fields
        (read for the whole chunk), its claim and loads go with the other items' that are ready in
        the same tick, in one round trip (actors/batching.py); so does its commit."""
        bind_item(batch_id, item_id)  # each item runs in its own task, whose context is its own
        while True:
            try:
                return await self._run_item(batch_id, item_id, stored)
            except UNAVAILABLE as exc:
                outage.lost(exc)
                if self.shutting_down:
                    return ItemEnd.RELEASED
                await asyncio.sleep(REDIS_PROBE_S)  # then claim again: a claim of our own lease runs on
            except Exception:
                logger.exception("Request %s of batch %s failed unexpectedly; it ends with error", item_id,
                                 batch_id)
                return await self._end_with_error(batch_id, item_id)

    async def _end_with_error(self, batch_id: str, item_id: str) -> ItemEnd:
        try:
            agent_id = self.store.runs.load_item(item_id).agent_id
            ref = BatchItemRef(batch_id, item_id, 0)
            self._finished(batch_id, await self.runner.record_error(
                agent_id, ref, "Internal error while running this request; see the worker's log.",
                started_ns=time.monotonic_ns()))
        except Exception:  # Redis gone again, or the same bug: the chunk must stay in flight to retry it
            self._release(item_id)
            return ItemEnd.UNSETTLED
        return ItemEnd.DONE

    async def _run_item(self, batch_id: str, item_id: str, stored: StoredItem | None) -> ItemEnd:
        while True:
            async with StreamSlot(streams=self.streams, limits=self.store.model_limits, item_id=item_id,
                                  owner=self.owner, release_after_s=self.settings.model_wait_release_s):
                if self.shutting_down:
                    return ItemEnd.RELEASED
                start = None
                if item_id in self.in_flight or item_id in self.claims.claiming:
                    claim = Claim("busy", 0)  # a duplicate message of a chunk this process runs
                elif stored is not None:
                    start = await self.claims.claim(stored)
                    claim = start.claim
                    if self.shutting_down and claim.action == "run":  # it began while the claim was on its way
                        self._release(item_id)
                        return ItemEnd.RELEASED
                else:
                    claim = self.store.runs.claim(batch_id=batch_id, item_id=item_id, owner=self.owner,
                                                  lease_s=self.settings.item_lease_s)
                if claim.action == "run":
                    return await self._run_claimed(batch_id, item_id, claim, start)
            if claim.action == "stop_running":
                agent_id = self.store.runs.load_item(item_id).agent_id
                ref = BatchItemRef(batch_id, item_id, claim.now_us)
                self._finished(batch_id, await self.runner.record_stop(agent_id, ref, self._stop_status(batch_id)))
            if claim.action != "busy":
                return ItemEnd.DONE
            # Another owner holds it. Acking this message now could strand the item if that owner
            # dies, so wait until it ends the item or its lease lapses and this claim takes over.
            await asyncio.sleep(min(self.settings.item_lease_s / 3, BUSY_POLL_MAX_S))

    async def _run_claimed(self, batch_id: str, item_id: str, claim: Claim,
                           start: ItemStart | None = None) -> ItemEnd:
        task = asyncio.current_task()
        self.in_flight[item_id] = InFlight(batch_id, task)
        try:
            finished = await self._run_owned(batch_id, item_id, claim, start)
        except asyncio.CancelledError:
            if item_id not in self.stopping:  # the worker is shutting down: give the item back
                self._release(item_id)
                task.uncancel()
                return ItemEnd.RELEASED
            # Stopped before its run began (waiting for memory): settle it as stopped.
            task.uncancel()
            agent_id = self.store.runs.load_item(item_id).agent_id
            finished = await self.runner.record_stop(agent_id, BatchItemRef(batch_id, item_id, claim.now_us),
                                                     self._stop_status(batch_id))
        except CapacityRelease:
            with contextlib.suppress(redis.RedisError):  # else its lease lapses: the retry takes it over
                self.store.runs.requeue(batch_id=batch_id, item_id=item_id, owner=self.owner)
            return ItemEnd.WAITING
        except BaseException:
            # Whatever failed after the claim (Redis, a bug): give the item back, so the retried
            # chunk runs it at once instead of waiting out a lease nobody renews.
            self._release(item_id)
            raise
        finally:
            self.in_flight.pop(item_id, None)
            self.stopping.discard(item_id)
        self._finished(batch_id, finished)
        return ItemEnd.DONE

    async def _run_owned(self, batch_id: str, item_id: str, claim: Claim, start: ItemStart | None) -> Finished:
        started_ns = time.monotonic_ns()
        ref = BatchItemRef(batch_id, item_id, claim.now_us)
        item = start.item if start else self.store.runs.load_item(item_id)
        agent = start.agent if start else self.store.agents.get(item.agent_id)
        if agent is None:
            return await self.runner.record_error(item.agent_id, ref, f"Agent {item.agent_id} was deleted before "
                                                  "this request ran.", started_ns=started_ns)
        history_bytes = min(self.runner.history.held_bytes(agent["id"]), context_budget_bytes(agent["llm_config"]))
        async with self.memory.reserve(3 * item.request_bytes + 2 * history_bytes):
            raw = (start and start.request) or self.store.runs.load_request(item_id)
            request = LettaBatchRequest.model_validate_json(raw)
            return await self.runner.run(agent, request, item=ref, started_ns=started_ns,
                                         history_fresh=bool(start and start.newer is not None),
                                         stopped_as=lambda: self._stop_status(batch_id) if item_id in self.stopping
                                         else None)

    def _finished(self, batch_id: str, finished: Finished) -> None:
        if finished.commit.committed and finished.commit.remaining == 0:
            self._send_finalize(batch_id)

    def _send_finalize(self, batch_id: str) -> None:
        try:
            self.tasks.send(FINALIZE_BATCH, batch_id)
        except UNAVAILABLE as exc:  # the reconciler asks again once Redis is back
            outage.lost(exc)

    # -- the sweep and the connection ------------------------------------------------------

    async def _watch_redis(self) -> None:
        while True:
            await asyncio.sleep(REDIS_PROBE_S)
            if outage.down:
                with contextlib.suppress(redis.RedisError):
                    self.store.ping()
                    outage.back()

    def _release(self, item_id: str) -> None:
        with contextlib.suppress(redis.RedisError):
            self.store.runs.release(item_id=item_id, owner=self.owner)

    def _stop_status(self, batch_id: str) -> str:
        status = self.store.batches.status(batch_id)
        return status if status in STOPPED_BATCH_STATUSES else BatchStatus.CANCELLED

    def stop_batch_locally(self, batch_id: str) -> None:
        """Close the streams of this batch's items that run here (on the event loop thread)."""
        for item_id, flight in list(self.in_flight.items()):
            if flight.batch_id == batch_id and item_id not in self.stopping:
                self.stopping.add(item_id)
                flight.task.cancel()
