"""The results export: every request of a batch with its outcome and messages, in submission
order, read in pages so that memory does not grow with the batch.

An item's messages are all written by its one commit (commit_run.lua), so they hold consecutive
sequence numbers; the commit records that range on the item (`msg_seq`), and the export reads each
item's messages from the batch's message index by score. This costs one HSET field per item in a
script that already writes the item's hash, and no index per item (docs/api.md, "Results")."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import redis

from app.store import keys
from app.store.batches import batch_item
from app.store.blobs import RequestBlobs

#: Items read per round trip of the export (each page costs three round trips: items, message
#: ids, messages).
EXPORT_PAGE_ITEMS = 500

_ITEM_FIELDS = ("batch_id", "agent_id", "idx", "status", "stop_reason", "ttft_ns", "total_duration_ns",
                "error", "attempts", "started_us", "completed_us", "msg_seq")


class ResultStore:
    def __init__(self, *, client: redis.Redis) -> None:
        self.client = client
        self.blobs = RequestBlobs(client=client)

    def stream(self, batch_id: str, *, page_items: int = EXPORT_PAGE_ITEMS) -> Iterator[dict[str, Any]]:
        """One result per item, in submission order."""
        start = 0
        while True:
            item_ids = self.client.zrange(keys.batch_items(batch_id), start, start + page_items - 1)
            if not item_ids:
                return
            yield from self._page(batch_id, item_ids)
            if len(item_ids) < page_items:
                return
            start += page_items

    def _page(self, batch_id: str, item_ids: list[str]) -> Iterator[dict[str, Any]]:
        with self.client.pipeline(transaction=False) as pipe:
            pipe.hget(keys.batch(batch_id), "status")
            for item_id in item_ids:
                pipe.hmget(keys.item(item_id), _ITEM_FIELDS)
            batch_status, *rows = pipe.execute()
        pending = self.blobs.unmaterialized(batch_id, [item_id for item_id, row in zip(item_ids, rows, strict=True)
                                                       if row[0] is None])
        items = [{"id": item_id, **dict(zip(_ITEM_FIELDS, row, strict=True))} if row[0] is not None
                 else pending[item_id]
                 for item_id, row in zip(item_ids, rows, strict=True) if row[0] is not None or item_id in pending]
        with self.client.pipeline(transaction=False) as pipe:
            for fields in items:
                first, _, last = (fields.get("msg_seq") or "").partition(":")
                if first and last:
                    pipe.zrangebyscore(keys.batch_messages(batch_id), first, last)
                else:
                    pipe.echo("")  # keeps one answer per item
            id_lists = [ids if isinstance(ids, list) else [] for ids in pipe.execute()]
        all_ids = [message_id for ids in id_lists for message_id in ids]
        raws = self.client.mget([keys.message(message_id) for message_id in all_ids]) if all_ids else []
        messages = iter(raws)
        for fields, ids in zip(items, id_lists, strict=True):
            found = [json.loads(raw) for raw in (next(messages) for _ in ids) if raw is not None]
            yield result_line(batch_item({k: v for k, v in fields.items() if v is not None}, batch_status), found)


def result_line(item: dict[str, Any], messages: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "index": item["index"], "batch_item_id": item["id"], "agent_id": item["agent_id"],
        "status": item["status"], "stop_reason": item["stop_reason"], "ttft_ns": item["ttft_ns"],
        "total_duration_ns": item["total_duration_ns"], "error": item["error"],
        "output_text": output_text(messages), "messages": messages,
    }


def output_text(messages: list[dict[str, Any]]) -> str | None:
    """The text of the last assistant message that has any."""
    for message in reversed(messages):
        if message.get("role") != "assistant":
            continue
        parts = [part.get("text") or "" for part in message.get("content") or [] if part.get("type") == "text"]
        if any(parts):
            return "".join(parts)
    return None
