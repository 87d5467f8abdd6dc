"""Ids in the shapes of the Letta API."""

from __future__ import annotations

import uuid

from app.ids import new_ids, new_ids_joined


def test_given_many_ids_made_at_once_when_read_as_uuids_then_each_is_a_distinct_rfc_4122_version_4_uuid():
    ids = new_ids("batch_item", 5000)

    assert len(set(ids)) == 5000
    assert {len(item_id) for item_id in ids} == {len("batch_item-") + 36}
    parsed = [uuid.UUID(item_id.removeprefix("batch_item-")) for item_id in ids]
    assert all(value.version == 4 and value.variant == uuid.RFC_4122 for value in parsed)
    assert [f"batch_item-{value}" for value in parsed] == ids
    # the 122 random bits vary: every hex digit outside the fixed ones takes many values
    assert all(len({item_id[11 + position] for item_id in ids}) == 16 for position in (0, 9, 15, 35))


def test_given_ids_made_joined_when_cut_at_their_width_then_each_is_a_distinct_version_4_uuid_shaped_as_new_ids():
    joined = new_ids_joined("batch_item", 5000)

    width = len("batch_item-") + 36
    ids = [joined[at:at + width].decode() for at in range(0, len(joined), width)]
    assert len(joined) == 5000 * width and len(set(ids)) == 5000
    parsed = [uuid.UUID(item_id.removeprefix("batch_item-")) for item_id in ids]
    assert all(value.version == 4 and value.variant == uuid.RFC_4122 for value in parsed)
    assert [f"batch_item-{value}" for value in parsed] == ids
    assert all(len({item_id[11 + position] for item_id in ids}) == 16 for position in (0, 9, 15, 35))
