"""Order-relative cursor pagination over a sorted set whose scores are creation sequence numbers.

`after=X` gives the members that follow X in the requested order, `before=X` the ones that
precede it (the nearest ones, still returned in the requested order). Paging on with the last
id of each page ends with an empty page and never repeats a member.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import redis

Order = Literal["asc", "desc"]


class UnknownCursor(LookupError):
    def __init__(self, name: str, value: str) -> None:
        super().__init__(f"Unknown cursor {name}={value!r}: it is not an id in this list.")


def page(
    client: redis.Redis, key: str, *, after: str | None = None, before: str | None = None,
    limit: int = 100, order: Order = "desc",
) -> list[str]:
    lo, hi = "-inf", "+inf"  # bounds in ascending score terms
    after_score = _score(client, key, "after", after)
    before_score = _score(client, key, "before", before)
    if order == "asc":
        if after_score is not None:
            lo = f"({after_score}"
        if before_score is not None:
            hi = f"({before_score}"
    else:
        if after_score is not None:
            hi = f"({after_score}"
        if before_score is not None:
            lo = f"({before_score}"
    # Walk from the `after` side when there is one; with only `before`, take the nearest ones.
    walk_ascending = (order == "asc") == (after is not None or before is None)
    if walk_ascending:
        members = client.zrangebyscore(key, lo, hi, start=0, num=limit)
    else:
        members = client.zrevrangebyscore(key, hi, lo, start=0, num=limit)
    if walk_ascending != (order == "asc"):
        members.reverse()
    return [m.decode() if isinstance(m, bytes) else m for m in members]


def filtered_page(
    client: redis.Redis, key: str, *, keep: Callable[[list[str]], list[bool]], after_score: int | None = None,
    before_score: int | None = None, within: tuple[int, int] | None = None, limit: int = 100,
    order: Order = "desc", step: int = 200,
) -> list[str]:
    """The members of `key` that `keep` keeps, paged like `page` but with the cursors given as
    scores (the cursor need not be a member of `key`), and only scores inside `within` (inclusive)
    when given. Walks `key` `step` members at a time until the page is full or `key` ends."""
    lo, hi = (f"{within[0]}", f"{within[1]}") if within else ("-inf", "+inf")
    walk_ascending = (order == "asc") == (after_score is not None or before_score is None)
    asc_after = after_score if order == "asc" else before_score  # exclusive lower bound
    asc_before = before_score if order == "asc" else after_score  # exclusive upper bound
    if asc_after is not None and (within is None or asc_after >= within[0]):
        lo = f"({asc_after}"
    if asc_before is not None and (within is None or asc_before <= within[1]):
        hi = f"({asc_before}"
    found: list[str] = []
    while len(found) < limit:
        if walk_ascending:
            pairs = client.zrangebyscore(key, lo, hi, start=0, num=step, withscores=True)
        else:
            pairs = client.zrevrangebyscore(key, hi, lo, start=0, num=step, withscores=True)
        if not pairs:
            break
        members = [m.decode() if isinstance(m, bytes) else m for m, _ in pairs]
        found.extend(member for member, kept in zip(members, keep(members), strict=True) if kept)
        edge = f"({int(pairs[-1][1])}"
        lo, hi = (edge, hi) if walk_ascending else (lo, edge)
        if len(pairs) < step:
            break
    found = found[:limit]
    if walk_ascending != (order == "asc"):
        found.reverse()
    return found


def _score(client: redis.Redis, key: str, name: str, member: str | None) -> int | None:
    if member is None:
        return None
    score = client.zscore(key, member)
    if score is None:
        raise UnknownCursor(name, member)
    return int(score)
