"""The Lua scripts behind every state transition that must be atomic (see app/lua/)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import redis
from redis.commands.core import Script

from app.redis_retry import as_unavailable

_LUA_DIR = Path(__file__).resolve().parent.parent / "lua"
#: `--#include NAME` on a line of its own puts app/lua/lib/NAME.lua there (Redis scripts cannot
#: share functions otherwise).
_INCLUDE = re.compile(r"^--#include (\w+)$", re.MULTILINE)


def script_text(name: str) -> str:
    """The source of app/lua/NAME.lua with its includes in place."""
    return _INCLUDE.sub(lambda match: (_LUA_DIR / "lib" / f"{match.group(1)}.lua").read_text().rstrip("\n"),
                        (_LUA_DIR / f"{name}.lua").read_text())


class _Script:
    """A registered script whose write Redis refused for now (a replica during a failover, or
    `maxmemory` reached) raises the error that says so, which callers wait out like any outage
    (app/redis_retry.py), on Redis 6 as on Redis 7."""

    def __init__(self, script: Script) -> None:
        self._script = script
        self.sha = script.sha
        self.script = script.script

    def __call__(self, keys: Sequence[Any] = (), args: Sequence[Any] = (), client: Any = None) -> Any:
        try:
            return self._script(keys=keys, args=args, client=client)
        except redis.ResponseError as error:
            converted = as_unavailable(error)
            if converted is error:
                raise
            raise converted from error


class Scripts:
    """Registered scripts, bound to one client (EVALSHA, with EVAL on a cold script cache)."""

    def __init__(self, *, client: redis.Redis) -> None:
        def load(name: str) -> _Script:
            return _Script(client.register_script(script_text(name)))

        self.claim_item = load("claim_item")
        self.claim_items = load("claim_items")
        self.commit_items = load("commit_items")
        self.materialize_items = load("materialize_items")
        self.add_items = load("add_items")
        self.persist_keys = load("persist_keys")
        self.renew_leases = load("renew_leases")
        self.release_item = load("release_item")
        self.requeue_item = load("requeue_item")
        self.commit_run = load("commit_run")
        self.stop_batch = load("stop_batch")
        self.finalize_batch = load("finalize_batch")
        self.due_deadlines = load("due_deadlines")
        self.unlock_if_owner = load("unlock_if_owner")
        self.record_callback_attempt = load("record_callback_attempt")
        self.newer_messages = load("newer_messages")
        self.limit_acquire = load("limit_acquire")
        self.limit_release = load("limit_release")
        self.limit_renew = load("limit_renew")
        self.limit_pause = load("limit_pause")
        self.claim_chunks = load("claim_chunks")
        self.record_chunk = load("record_chunk")
