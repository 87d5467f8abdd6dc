"""Order-relative cursor pagination over a sorted set, on a real Redis."""

from __future__ import annotations

import pytest

from app.store import connect
from app.store.pagination import UnknownCursor, page

IDS = [f"id{n}" for n in range(10)]


@pytest.fixture
def client(redis_url: str):
    client = connect(redis_url)
    client.zadd("z", {member: score for score, member in enumerate(IDS, start=1)})
    return client


@pytest.mark.parametrize("order", ["asc", "desc"])
def test_given_any_page_size_when_paging_forward_with_the_last_id_then_every_member_comes_once_and_paging_ends(
        client, order):
    expected = IDS if order == "asc" else list(reversed(IDS))
    for size in (1, 3, 10, 11):
        seen, after = [], None
        while members := page(client, "z", after=after, limit=size, order=order):
            seen += members
            after = members[-1]
        assert seen == expected


@pytest.mark.parametrize("order", ["asc", "desc"])
def test_given_any_page_size_when_paging_backward_with_the_first_id_then_every_member_comes_once(client, order):
    expected = IDS if order == "asc" else list(reversed(IDS))
    seen, before = [], expected[-1]
    while members := page(client, "z", before=before, limit=3, order=order):
        seen = members + seen
        before = members[0]
    assert seen == expected[:-1]


def test_given_both_cursors_when_paging_then_only_members_between_them_come(client):
    assert page(client, "z", after="id2", before="id6", limit=10, order="asc") == ["id3", "id4", "id5"]
    assert page(client, "z", after="id6", before="id2", limit=10, order="desc") == ["id5", "id4", "id3"]


def test_given_an_id_not_in_the_set_when_used_as_cursor_then_unknown_cursor(client):
    with pytest.raises(UnknownCursor):
        page(client, "z", after="other", limit=3, order="asc")
