"""Fixtures of the actor tests: a store and a task queue (recording its messages in the ledger,
as the worker's broker does) on the test's real Redis."""

from __future__ import annotations

import pytest
from dramatiq.brokers.redis import RedisBroker

from app.message_ledger import MessageLedger
from app.store import Store
from app.tasks import TaskQueue


@pytest.fixture
def tasks(redis_url: str, store: Store) -> TaskQueue:
    return TaskQueue(broker=RedisBroker(url=redis_url, middleware=[MessageLedger(store=store)]))
