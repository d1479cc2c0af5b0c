"""The TCP server both Spark-mode endpoints use (the driver's reservation server, each TF process's feed): a thread
per connection, a cap on how many are served at once, and the wire handshake in the connection's own thread.
"""

from __future__ import annotations

import logging
import socket
import threading
from collections.abc import Callable

from tfnode.spark.wire import DEFAULT_TIMEOUTS, STEP, Connection, Timeouts, close_quietly, peer_name

log = logging.getLogger("tfnode.spark.wire")


class Listener:
    """A TCP server that runs `handler(connection)` in a thread per connection, at most `max_connections` at once.

    Why: a thread per connection is simple and fits the few connections expected (one per node, one per feeding
    task), but without a cap a stranger could open connections until threads or memory run out; beyond the cap
    connections are closed at once with a warning. The handshake happens in the connection's thread, so a slow
    peer never holds up `accept`. The handler owns the connection: it decides when to close it (a failed handler
    has it closed).
    """

    def __init__(self, host: str, key: bytes, handler: Callable[[Connection], None], *, max_connections: int,
                 name: str, timeouts: Timeouts = DEFAULT_TIMEOUTS) -> None:
        if max_connections < 1:
            raise ValueError(f"max_connections must be at least 1, got {max_connections}")
        self.name = name
        self.max_connections = max_connections
        self._key = key
        self._handler = handler
        self._timeouts = timeouts
        self._slots = threading.BoundedSemaphore(max_connections)
        self._live: set[Connection] = set()
        self._lock = threading.Lock()
        self._closed = threading.Event()
        self._sock = socket.create_server((host, 0))
        self._sock.settimeout(STEP)  # so close() ends the accept loop
        self.port: int = self._sock.getsockname()[1]
        threading.Thread(target=self._accept_loop, name=name, daemon=True).start()

    def _accept_loop(self) -> None:
        while not self._closed.is_set():
            try:
                sock, _ = self._sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            if not self._slots.acquire(blocking=False):
                log.warning("%s: refused a connection from %s: already %d connections open (the limit)",
                            self.name, peer_name(sock), self.max_connections)
                close_quietly(sock)
                continue
            threading.Thread(target=self._serve, args=(sock,), name=f"{self.name}-conn", daemon=True).start()

    def _serve(self, sock: socket.socket) -> None:
        peer = peer_name(sock)
        conn: Connection | None = None
        try:
            conn = Connection.handshake(sock, self._key, server=True, timeouts=self._timeouts)
            with self._lock:
                if self._closed.is_set():
                    conn.close()
                    return
                self._live.add(conn)
            self._handler(conn)
        except Exception as e:  # noqa: BLE001 - one bad connection must not take the server down
            log.warning("%s: dropped the connection from %s: %s", self.name, peer, e)
            if conn is not None:
                conn.close()
            else:
                close_quietly(sock)
        finally:
            if conn is not None:
                with self._lock:
                    self._live.discard(conn)
            self._slots.release()

    def close(self) -> None:
        """Stops accepting and closes the connections being served (their handlers see ConnectionError)."""
        self._closed.set()
        self._sock.close()
        with self._lock:
            live = list(self._live)
        for conn in live:
            conn.close()
