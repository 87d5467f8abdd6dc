"""Keeping the leases of the items a worker runs alive, so nobody takes them over."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from app.outage import outage
from app.redis_retry import UNAVAILABLE
from app.store import Store

logger = logging.getLogger(__name__)


async def renew_leases(*, store: Store, owner: str, lease_s: float, item_ids: Callable[[], list[str]]) -> None:
    """Every third of a lease, extend the leases of the items this owner still runs."""
    while True:
        await asyncio.sleep(lease_s / 3)
        try:
            store.runs.renew(item_ids=item_ids(), owner=owner, lease_s=lease_s)
        except UNAVAILABLE as exc:
            outage.lost(exc)
