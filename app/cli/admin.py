"""Operator commands that talk to Redis directly, not to the REST API: API keys are managed, and
any tenant's webhook secret read, by whoever can reach Batchline's Redis (REDIS_URL, or the
embedded server under BATCHLINE_VAR_DIR), so that no API key can make or revoke keys or read
another tenant's secret."""

from __future__ import annotations

from typing import Annotated

import redis
import typer
from pydantic import ValidationError
from rich.console import Console
from rich.table import Table
from rich.text import Text

from app.callbacks import tenant_secret
from app.cli.client import CliError
from app.embedded_redis import EmbeddedRedis
from app.settings import Settings, invalid_settings_message
from app.store import Store, connect
from app.store.api_keys import InvalidKeyName
from app.tenancy import DEFAULT_TENANT, InvalidTenant, check_tenant

keys_cli = typer.Typer(no_args_is_help=True, help="Make, list and revoke API keys (talks to Redis directly).")
console = Console()


def admin_store() -> Store:
    try:
        settings = Settings()
    except ValidationError as exc:
        raise CliError(invalid_settings_message(exc)) from None
    url = settings.redis_url
    if url is None:
        port = EmbeddedRedis(var_dir=settings.var_dir).running_port()
        if port is None:
            raise CliError(f"No Batchline Redis is running under {settings.var_dir}/: start the service first, or set "
                           "REDIS_URL (and BATCHLINE_VAR_DIR) to the installation's.")
        url = EmbeddedRedis(var_dir=settings.var_dir).url(port)
    store = Store(client=connect(url))
    try:
        store.ping()
    except redis.RedisError as exc:
        raise CliError(f"Redis is not reachable ({type(exc).__name__}); is REDIS_URL right?") from None
    return store


@keys_cli.command("create")
def keys_create(
    tenant: Annotated[str, typer.Option("--tenant", help="The tenant the key acts as.")] = DEFAULT_TENANT,
    name: Annotated[str, typer.Option("--name", help="What the key is for (shown by `keys list`).")] = "cli",
) -> None:
    """Make a key; it is printed once, as the last line, and stored only as a hash."""
    try:
        record, secret = admin_store().api_keys.create(tenant=tenant, name=name)
    except (InvalidTenant, InvalidKeyName) as exc:
        raise CliError(str(exc)) from None
    # markup=False: a name is the operator's text, and "[/x]" in it must print, not raise
    console.print(f"Key {record.id} ({record.name!r}) for tenant {record.tenant} made. It is shown only now:",
                  highlight=False, markup=False)
    print(secret, flush=True)


@keys_cli.command("list")
def keys_list() -> None:
    """Every key: id, name, tenant, when it was made and last used (never the key itself)."""
    table = Table("id", "name", "tenant", "created", "last used")
    for key in admin_store().api_keys.list():
        table.add_row(*(Text(cell) for cell in (key.id, key.name, key.tenant, key.created_at,
                                                 key.last_used_at or "never")))
    console.print(table)


@keys_cli.command("revoke")
def keys_revoke(key_id: Annotated[str, typer.Argument(help="The key's id (`keys list`).")]) -> None:
    """Revoke a key: its next call gets 401."""
    if not admin_store().api_keys.revoke(key_id):
        raise CliError(f"No key {key_id!r} (see `batchline keys list`).")
    console.print(f"Key {key_id} revoked.", highlight=False, markup=False)


def tenant_webhook_secret(tenant: str) -> str:
    """`tenant`'s callback signing secret, as the workers sign with it (BATCHLINE_WEBHOOK_SECRET,
    read from this process's environment as the service reads it, for tenant "default")."""
    try:
        check_tenant(tenant)
    except InvalidTenant as exc:
        raise CliError(str(exc)) from None
    return tenant_secret(admin_store().secrets, tenant, configured=Settings().webhook_secret)
