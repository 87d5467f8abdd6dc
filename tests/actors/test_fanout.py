"""The lazy fan-out on a real Redis and a real Redis broker: a batch has at most its budget of
chunk messages in the queue, each finished chunk enqueues the next once (a duplicate finish
enqueues nothing), and the reconciler repairs a lost "enqueue the next chunk" step."""

from __future__ import annotations

import asyncio
from typing import Any

from dramatiq.brokers.redis import RedisBroker
from dramatiq.middleware import Middleware

from actors.fanout import ChunkFeeder
from actors.reconciler import Reconciler
from actors.runtime import WorkerRuntime
from app.message_ledger import MessageLedger
from app.schemas.agents import CreateAgent
from app.schemas.batches import LettaBatchRequest
from app.settings import Settings
from app.store import Store, keys
from app.tasks import RUN_CHUNK, START_BATCH, TaskQueue
from tests.support.queues import pending_messages


def _feeder(store: Store, tasks: Any, *, budget: int = 0, threads: int = 1) -> ChunkFeeder:
    return ChunkFeeder(store=store, tasks=tasks, chunk_size=10, chunks_in_flight_per_batch=budget,
                       own_threads=lambda: threads)


def _batch(store: Store, count: int) -> str:
    agent = store.agents.create(CreateAgent(model="simulated/echo"))
    requests = [LettaBatchRequest(agent_id=agent["id"], input=f"q{i}") for i in range(count)]
    batch_id, _ = store.batches.create(requests=requests, metadata=None, completion_window_s=3600, callback_url=None)
    return batch_id


def _chunk_messages(redis_url: str) -> int:
    return sum(1 for message in pending_messages(redis_url) if message.endswith(RUN_CHUNK))


def test_given_a_budget_of_three_when_a_big_batch_starts_then_three_chunk_messages_are_queued_and_recorded(
        store, tasks, redis_url):
    batch_id = _batch(store, count=500)
    assert _feeder(store, tasks, budget=3).feed(batch_id) == 3
    assert _chunk_messages(redis_url) == 3
    ledger = store.progress.progress([batch_id])[0].chunks
    assert [chunk.start for chunk in ledger] == [0, 10, 20] and all(chunk.message_id for chunk in ledger)
    assert _feeder(store, tasks, budget=3).feed(batch_id) == 0  # a start delivered twice
    assert _chunk_messages(redis_url) == 3


def test_given_no_budget_set_when_workers_send_heartbeats_then_the_budget_is_their_threads(store, tasks):
    store.monitor.heartbeat("w1", ttl_s=10, threads=16)
    store.monitor.heartbeat("w2", ttl_s=10, threads=8)
    assert _feeder(store, tasks, threads=16).budget() == 24
    store.client.delete(keys.worker("w1"), keys.worker("w2"))
    assert _feeder(store, tasks, threads=4).budget() == 4  # before its own first heartbeat
    assert _feeder(store, tasks, budget=7, threads=4).budget() == 7


def test_given_the_next_chunk_claimed_but_never_sent_when_swept_then_that_chunk_is_enqueued(store, tasks, redis_url):
    batch_id = _batch(store, count=50)
    feeder = _feeder(store, tasks, budget=2)
    feeder.feed(batch_id)
    # A chunk finishes and takes its successor, and the process dies before sending it.
    assert store.progress.claim_chunks(batch_id, budget=2, chunk_size=10, finished_start=0) == [(20, 29)]
    repairs = Reconciler(store=store, tasks=tasks, callback_max_attempts=3, chunk_budget=feeder.budget).sweep()
    assert (repairs.chunks_requeued, repairs.fanouts_resumed) == (1, 0)
    assert _chunk_messages(redis_url) == 3  # chunk 0's message is still there: nothing acked it in this test


def test_given_a_finished_chunk_whose_successor_was_never_claimed_when_swept_then_the_fan_out_is_topped_up(
        store, tasks, redis_url):
    batch_id = _batch(store, count=50)
    feeder = _feeder(store, tasks, budget=2)
    feeder.feed(batch_id)
    reconciler = Reconciler(store=store, tasks=tasks, callback_max_attempts=3, chunk_budget=feeder.budget)
    store.progress.record_start(batch_id, message_id="acked-long-ago")
    assert reconciler.sweep().fanouts_resumed == 0  # two chunks in flight: the fan-out is moving
    store.client.hdel(keys.batch_chunks(batch_id), "0")  # finished; its worker died before the next claim
    assert reconciler.sweep().fanouts_resumed == 1
    assert sorted(message.split(":")[-1] for message in pending_messages(redis_url)).count(START_BATCH) == 1
    assert feeder.feed(batch_id) == 1  # what start_batch does with it: one place was free
    assert [chunk.start for chunk in store.progress.progress([batch_id])[0].chunks] == [10, 20]


def test_given_a_chunk_run_twice_when_each_run_ends_then_the_next_chunk_is_enqueued_once(store, redis_url, tmp_path):
    batch_id = _batch(store, count=3)
    sent: list[tuple[Any, ...]] = []

    class Recording:
        def send(self, actor_name: str, *args: Any, delay_ms: int | None = None) -> None:
            sent.append((actor_name, *args))

    runtime = WorkerRuntime(settings=Settings(redis_url=redis_url, var_dir=tmp_path, _env_file=None,
                                              simulated_ttft_ms=1, simulated_token_ms=0, chunk_size=1,
                                              chunks_in_flight_per_batch=2),
                            redis_url=redis_url, tasks=Recording())

    async def go() -> None:
        await runtime.start()
        try:
            runtime.feeder.feed(batch_id)
            await runtime.run_chunk(batch_id, 0, 0)
            await runtime.run_chunk(batch_id, 0, 0)  # a redelivery of the same chunk
        finally:
            runtime.shutting_down = True
            await runtime.close()

    asyncio.run(go())
    assert [args for args in sent if args[0] == RUN_CHUNK] == [(RUN_CHUNK, batch_id, 0, 0), (RUN_CHUNK, batch_id, 1, 1),
                                                               (RUN_CHUNK, batch_id, 2, 2)]
    assert [chunk.start for chunk in store.progress.progress([batch_id])[0].chunks] == [1, 2]


def test_given_a_chunk_finished_elsewhere_before_its_sender_recorded_it_when_recorded_then_its_place_stays_free(
        store, redis_url):
    batch_id = _batch(store, count=30)
    # Another worker process: its own broker, recording its messages as every broker does.
    elsewhere = _feeder(store, TaskQueue(broker=RedisBroker(url=redis_url, middleware=[MessageLedger(store=store)])),
                        budget=1)

    class FinishedAtOnce(Middleware):
        """The other process fetches chunk 0 and runs it to its end between this process's
        enqueue and its ledger's record of the message (Dramatiq runs the later middleware's
        after_enqueue first): a stalled sender, or a chunk of quick items."""

        def after_enqueue(self, broker: Any, message: Any, delay: Any) -> None:
            if message.actor_name == RUN_CHUNK and message.args[1] == 0:
                assert elsewhere.feed(batch_id, finished_start=0) == 1  # it takes chunk 10

    here = TaskQueue(broker=RedisBroker(url=redis_url, middleware=[MessageLedger(store=store), FinishedAtOnce()]))
    assert _feeder(store, here, budget=1).feed(batch_id) == 1
    # Chunk 0 ended: only chunk 10 is in flight, and its end takes the next (no place held by a ghost).
    assert [chunk.start for chunk in store.progress.progress([batch_id])[0].chunks] == [10]
    assert elsewhere.feed(batch_id, finished_start=10) == 1
