"""The CLI's admin path: straight to the service's Redis, for what no API key may ask for (another
tenant's webhook secret). Whoever can reach that Redis can read every secret in it anyway."""

from __future__ import annotations

import redis
from pydantic import ValidationError

from app.callbacks import tenant_secret
from app.cli.client import CliError
from app.embedded_redis import EmbeddedRedis
from app.settings import Settings
from app.store import Store, connect


def admin_settings() -> Settings:
    """The service's settings, read as the service reads them (environment and `.env`)."""
    try:
        return Settings()
    except ValidationError as exc:
        raise CliError(f"Invalid Batchline settings in the environment: {exc.errors()[0]['loc']}") from None


def redis_url(settings: Settings) -> str:
    """REDIS_URL, else the embedded redis-server already running under the var directory (never
    started from here: without a service there is nothing to administer)."""
    if settings.redis_url:
        return settings.redis_url
    port = EmbeddedRedis(var_dir=settings.var_dir).running_port()
    if port is None:
        raise CliError(f"No Redis to reach: set REDIS_URL, or run this where the service runs "
                       f"(no embedded Redis is running under {settings.var_dir.resolve()}).")
    return EmbeddedRedis(var_dir=settings.var_dir).url(port)


def tenant_webhook_secret(tenant: str) -> str:
    settings = admin_settings()
    try:
        return tenant_secret(Store(client=connect(redis_url(settings))).secrets, tenant,
                             configured=settings.webhook_secret)
    except redis.RedisError as exc:
        raise CliError(f"Redis is not reachable ({type(exc).__name__}).") from None
