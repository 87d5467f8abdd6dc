"""Tenants: who owns an agent or a batch. The tenant always comes from the caller's API key,
never from the request, and is what `created_by_id` carries."""

from __future__ import annotations

import re

from app.ids import DEFAULT_USER_ID

#: The tenant of the key made at first start, and of every call when authentication is off.
DEFAULT_TENANT = "default"
#: Tenant names: short, lower-case, safe in a Redis key and a log line.
TENANT_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,63}$")


class InvalidTenant(ValueError):
    """A tenant name that TENANT_PATTERN refuses."""


def check_tenant(name: str) -> str:
    if not TENANT_PATTERN.fullmatch(name):  # match() would accept a trailing newline
        raise InvalidTenant(f"tenant {name!r} must be 1 to 64 characters of a-z, 0-9, '_', '.' or '-', "
                            "starting with a letter or digit")
    return name


def owner_of(created_by_id: str | None) -> str:
    """The tenant of a stored record: records written before tenants existed carry Letta's default
    user id (or nothing) and belong to the default tenant."""
    if not created_by_id or created_by_id == DEFAULT_USER_ID:
        return DEFAULT_TENANT
    return created_by_id
