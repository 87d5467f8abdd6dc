"""A slow network link to Redis for tests: a TCP proxy on a free port whose every connection
carries what the client sends at `bytes_per_s`, as a congested link would (the client's writes
return at once, as they do into a kernel's send buffer; Redis gets the bytes later). Replies
come back at full speed. Commands sent on two connections then reach Redis in the order of
the link, not of the sends: a large write on one is still arriving when a small command sent
after it on another has run."""

from __future__ import annotations

import contextlib
import queue
import socket
import threading
import time
from types import TracebackType

from app.embedded_redis import free_port

#: Bytes forwarded at a time on the slow direction.
_PIECE_BYTES = 16 * 1024


class SlowLink:
    def __init__(self, *, target_port: int, bytes_per_s: int) -> None:
        self.port = free_port()
        self._target_port = target_port
        self._bytes_per_s = bytes_per_s
        self._listener = socket.create_server(("127.0.0.1", self.port))
        self._open = 0
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def url(self, db: int = 0) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"

    def wait_for_closed(self, *, still_open: int, timeout_s: float = 30.0) -> None:
        """Until no more than `still_open` connections are open: those the client closed are
        closed once Redis has read (hence run) everything sent on them and closed its end."""
        deadline = time.monotonic() + timeout_s
        while self._open > still_open:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self._open} connections still open through the slow link")
            time.sleep(0.01)

    @property
    def open_connections(self) -> int:
        return self._open

    def close(self) -> None:
        self._listener.close()

    def __enter__(self) -> SlowLink:
        return self

    def __exit__(self, *_: type[BaseException] | BaseException | TracebackType | None) -> None:
        self.close()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self._target_port))
            with self._lock:
                self._open += 1
            pending: queue.Queue[bytes] = queue.Queue()
            threading.Thread(target=self._read_client, args=(client, pending), daemon=True).start()
            threading.Thread(target=self._forward_slowly, args=(pending, upstream), daemon=True).start()
            threading.Thread(target=self._replies, args=(upstream, client), daemon=True).start()

    @staticmethod
    def _read_client(client: socket.socket, pending: queue.Queue[bytes]) -> None:
        try:
            while data := client.recv(256 * 1024):
                pending.put(data)
        except OSError:
            pass
        pending.put(b"")  # the client closed: forward what is left, then close

    def _forward_slowly(self, pending: queue.Queue[bytes], upstream: socket.socket) -> None:
        try:
            while data := pending.get():
                for start in range(0, len(data), _PIECE_BYTES):
                    piece = data[start:start + _PIECE_BYTES]
                    time.sleep(len(piece) / self._bytes_per_s)
                    upstream.sendall(piece)
            upstream.shutdown(socket.SHUT_WR)
        except OSError:
            pass

    def _replies(self, upstream: socket.socket, client: socket.socket) -> None:
        try:
            while data := upstream.recv(256 * 1024):
                with contextlib.suppress(OSError):  # the client is gone: read on until Redis closes its end
                    client.sendall(data)
        except OSError:
            pass
        finally:
            upstream.close()
            client.close()
            with self._lock:
                self._open -= 1
