"""Everything a Redis database holds, as text: for tests that look for what must not be there."""

from __future__ import annotations

import redis


def everything_in(client: redis.Redis) -> str:
    """Every key name and every value of every type, one per line (client with decode_responses)."""
    parts: list[str] = []
    for name in client.scan_iter(count=1000):
        parts.append(name)
        kind = client.type(name)
        if kind == "string":
            parts.append(client.get(name) or "")
        elif kind == "hash":
            parts.extend(f"{field}={value}" for field, value in client.hgetall(name).items())
        elif kind == "list":
            parts.extend(client.lrange(name, 0, -1))
        elif kind == "set":
            parts.extend(client.smembers(name))
        elif kind == "zset":
            parts.extend(client.zrange(name, 0, -1))
        elif kind == "stream":
            parts.extend(str(entry) for entry in client.xrange(name))
    return "\n".join(parts)
