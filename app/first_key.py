"""Zero configuration stays safe: the first web process to start on an installation without API
keys makes one for the default tenant, prints it once and saves it to `<var>/api-key` (mode
0600), where the CLI and the README's SDK example read it. A later start, or a Redis emptied
under an existing key file, reuses the file's key."""

from __future__ import annotations

import json
import logging
import os
import tempfile
from pathlib import Path

import redis

from app.ids import now_iso
from app.logs import json_logs
from app.store import Store
from app.store.api_keys import looks_like_key
from app.tenancy import DEFAULT_TENANT

logger = logging.getLogger(__name__)

#: The key file's name under the var directory.
KEY_FILE_NAME = "api-key"
#: How long one process may hold the right to make the first key.
BOOTSTRAP_LEASE_S = 30.0


def key_file(var_dir: Path) -> Path:
    return Path(var_dir) / KEY_FILE_NAME


def read_key_file(path: Path) -> str | None:
    try:
        text = path.read_text().strip()
    except (FileNotFoundError, IsADirectoryError, PermissionError):
        return None
    return text if looks_like_key(text) else None


def ensure_first_key(store: Store, *, var_dir: Path) -> None:
    try:
        _ensure(store, key_file(var_dir))
    except redis.RedisError as exc:
        logger.warning("Could not check for API keys at start (%s); if none exists yet, restart once Redis is up "
                       "or run `batchline keys create`.", type(exc).__name__)


def _ensure(store: Store, path: Path) -> None:
    keys = store.api_keys
    if keys.count() or not keys.claim_bootstrap(owner=str(os.getpid()), ttl_s=BOOTSTRAP_LEASE_S):
        return
    try:
        if keys.count():
            return
        existing = read_key_file(path)
        if existing is not None:
            record, _ = keys.create(tenant=DEFAULT_TENANT, name="first-start", secret=existing)
            logger.info("Registered the API key in %s for tenant %s (key id %s)", path, DEFAULT_TENANT, record.id)
            return
        record, secret = keys.create(tenant=DEFAULT_TENANT, name="first-start")
        saved = f"saved to {path} (mode 0600)"
        try:
            _write_private(path, secret)
        except OSError as exc:
            # The key is registered already, so a failed start would leave a key nobody knows:
            # start anyway, and show it (this once is the only time it can be seen).
            logger.warning("The first API key could not be saved to %s (%s); it is printed once below.",
                           path, exc.strerror or type(exc).__name__)
            saved = "NOT saved: keep it now"
        _show_once(f"Batchline made an API key for tenant '{DEFAULT_TENANT}' (key id {record.id}), {saved}:", secret)
    finally:
        keys.release_bootstrap()


def _show_once(text: str, secret: str) -> None:
    """The one time the key is shown: printed, not logged (no handler or aggregator gets it as a
    log record), as one JSON object when the logs are JSON lines."""
    if json_logs():
        print(json.dumps({"time": now_iso(), "level": "WARNING", "logger": __name__, "message": text,
                          "api_key": secret}), flush=True)
    else:
        print(f"{text}\n{secret}", flush=True)


def _write_private(path: Path, secret: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    # A name of its own (mkstemp: O_EXCL, mode 0600), so whatever a crash left behind is no obstacle.
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(descriptor, "w") as file:
            file.write(secret + "\n")
        os.replace(temporary, path)
    except OSError:
        Path(temporary).unlink(missing_ok=True)
        raise
