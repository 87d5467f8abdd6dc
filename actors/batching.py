"""Claims and commits of the items a worker process runs, batched per event-loop tick: every item
that is ready to be claimed (or whose run has ended) in the same tick of the loop goes to Redis
with the others in one pipeline, one script call per batch (app/store/claims.py, commits.py).

Each item still awaits its own answer (a future) and gets exactly its own: a claim per item, a
commit per item checked on its own (exactly once, its own lease), so nothing of the guarantees is
shared; only the round trip and the batch-wide writes (counters, metrics, one ZADD per index, the
agent's reads) are. The flush runs on the loop's next turn (`call_soon`) or at once when
`max_items` are waiting, so batching adds no waiting of its own: items that become ready in the
same tick were going to queue behind each other's round trips anyway. A script call that fails for
anything but an outage wrote nothing (the scripts check everything first), and its entries are
sent again one by one, so one item's bad data fails that item alone; a commit flush answers per
call (one per batch and slice), so the entries of the calls that did write keep their answers.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Generic, TypeVar

import redis

from app.engine.commit import MAX_REPLAYS, BlockContention, replay_block_edits
from app.engine.history import HistoryCache
from app.redis_retry import UNAVAILABLE, RedisRetry
from app.store import Store
from app.store.commits import ItemCommit
from app.store.item_start import ItemStart
from app.store.runs import Commit, RunRecord, StoredItem

logger = logging.getLogger(__name__)

#: Items one flush sends at most; more waiting flush at once in slices of this size. A script
#: blocks the whole Redis while it runs (about 40 us an item for a commit): at 200 the longest
#: commits took 7-9.5 ms and every other client (GET batch, heartbeats) waited behind them; at 50,
#: 2.8-3.9 ms, for 6.4 Redis commands an item instead of 6.0 (docs/performance.md).
MAX_ITEMS_PER_FLUSH = 50

T = TypeVar("T")
R = TypeVar("R")


class _Batcher(Generic[T, R]):
    """Collects (entry, future) pairs and sends them to `send` together on the loop's next turn."""

    def __init__(self, *, send: Callable[[list[T]], list[R | Exception]],
                 max_items: int = MAX_ITEMS_PER_FLUSH) -> None:
        self._send = send
        self.max_items = max_items
        self._waiting: list[tuple[T, asyncio.Future[R]]] = []
        self._scheduled = False
        #: Flushes sent and entries in them (for the tests and the logs).
        self.flushes = 0
        self.entries = 0

    def submit(self, entry: T) -> asyncio.Future[R]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[R] = loop.create_future()
        self._waiting.append((entry, future))
        if len(self._waiting) >= self.max_items:
            self.flush()
        elif not self._scheduled:
            self._scheduled = True
            loop.call_soon(self.flush)
        return future

    def flush(self) -> None:
        self._scheduled = False
        waiting, self._waiting = self._waiting, []
        if not waiting:
            return
        self.flushes += 1
        self.entries += len(waiting)
        try:
            answers: list[R | Exception] = self._send([entry for entry, _ in waiting])
        except Exception as exc:  # the whole call failed
            answers = [exc] * len(waiting)
        for (entry, future), answer in zip(waiting, answers, strict=True):
            if isinstance(answer, Exception) and not isinstance(answer, UNAVAILABLE) and len(waiting) > 1:
                # One entry's bad data fails its call, which wrote nothing (the scripts check
                # everything first): send it alone, so that the failure stays with its item.
                # (An outage is waited out by each waiting item instead.)
                try:
                    answer = self._send([entry])[0]
                except Exception as alone:
                    answer = alone
            _settle(future, answer)


def _settle(future: asyncio.Future[R], answer: R | Exception) -> None:
    if future.done():
        return
    if isinstance(answer, Exception):
        future.set_exception(answer)
    else:
        future.set_result(answer)


class ClaimBatcher:
    """Claims items and reads what their runs need (ItemStart), many items to a round trip."""

    def __init__(self, *, store: Store, owner: str, lease_s: float, history: HistoryCache) -> None:
        self.store = store
        self.owner = owner
        self.lease_s = lease_s
        self.history = history
        self.batcher: _Batcher[StoredItem, ItemStart] = _Batcher(send=self._send)
        #: Items whose claim is on its way: a duplicate of one of them (a duplicate chunk message)
        #: must not claim it again as its own lease.
        self.claiming: set[str] = set()

    async def claim(self, item: StoredItem) -> ItemStart:
        self.claiming.add(item.id)
        future = self.batcher.submit(item)
        try:
            return await asyncio.shield(future)
        except asyncio.CancelledError:
            # The claim goes on without this item's task: give the item back if it was claimed.
            future.add_done_callback(lambda done: self._release_unused(item.id, done))
            raise
        finally:
            self.claiming.discard(item.id)

    def _send(self, items: list[StoredItem]) -> list[ItemStart]:
        history = self.history
        starts = self.store.claims.claim_many(items, owner=self.owner, lease_s=self.lease_s,
                                              history_after_seq=history.after_seq,
                                              history_limit=history.max_messages,
                                              history_max_bytes=history.max_bytes)
        # Before any other task runs: what is newer is exactly what the cache did not hold.
        absorbed = set()
        for start in starts:
            agent_id = start.item.agent_id
            if agent_id not in absorbed and start.agent is not None and start.newer is not None:
                history.absorb(agent_id, start.newer)
                absorbed.add(agent_id)
        return starts

    def _release_unused(self, item_id: str, done: asyncio.Future[ItemStart]) -> None:
        if done.cancelled() or done.exception() is not None or done.result().claim.action != "run":
            return
        with contextlib.suppress(redis.RedisError):
            self.store.runs.release(item_id=item_id, owner=self.owner)


class CommitBatcher:
    """Commits finished runs of batch items, many to a round trip; each waits out a Redis outage
    (its result is kept) and replays its memory edits when another run of its agent changed a
    block first (app/engine/commit.py)."""

    def __init__(self, *, store: Store, owner: str, redis_retry: RedisRetry) -> None:
        self.store = store
        self.owner = owner
        self.redis_retry = redis_retry
        self.batcher: _Batcher[ItemCommit, Commit] = _Batcher(
            send=lambda entries: store.commits.commit_each(entries, owner=owner))

    async def commit(self, *, agent_id: str, record: RunRecord, batch_id: str, item_id: str) -> Commit:
        """The run's commit. A stop or a shutdown that arrives meanwhile waits for it, also while
        it waits out an outage: the run has ended, there is nothing left to stop, and its result
        is kept (a shutdown ends the outage's wait: the retry gives up, and the item goes back)."""
        return await _uncancelled(asyncio.ensure_future(
            self._commit(agent_id=agent_id, record=record, batch_id=batch_id, item_id=item_id)))

    async def _commit(self, *, agent_id: str, record: RunRecord, batch_id: str, item_id: str) -> Commit:
        for _ in range(MAX_REPLAYS):
            entry = ItemCommit(batch_id=batch_id, item_id=item_id, agent_id=agent_id, record=record)
            commit = await self.redis_retry.wait_for(lambda entry=entry: self.batcher.submit(entry))
            if commit.stale_block is None:
                return commit
            # Another run of the agent (maybe in the same flush, committed before this one)
            # changed a block: replay this run's edits on the new value, in the next flush.
            record = replay_block_edits(record, await self.redis_retry.call(self.store.agents.blocks, agent_id))
        raise BlockContention(f"memory blocks of agent {agent_id} kept changing under this run's commit")


async def _uncancelled(future: asyncio.Future[T]) -> T:
    """The future's result, awaited through any cancellation of the awaiting task (the task is
    uncancelled each time); only the future's own cancellation ends the wait early."""
    while True:
        try:
            return await asyncio.shield(future)
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if future.cancelled() or task is None:
                raise
            task.uncancel()
