"""Reservation and control between the Spark driver and the TF nodes: authenticated JSON over TCP.

Why: TFoS's reservation server takes unauthenticated pickles, finds its address by connecting to 8.8.8.8 and lets
executors wait forever. Here every frame is HMAC'd with a per-cluster secret (`tfnode.wire`), the address comes
from local name resolution only, and both sides time out with a message naming who registered and who is missing.

The registration connection stays open for the node's lifetime and doubles as the control channel: the driver
pushes `end_feed` / `stop`, the node reports `done` / `failed` (with its traceback) / `tensorboard`. A node whose
driver connection drops exits, so a dead driver leaves no TF process behind.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from tfnode import cluster_spec as cs
from tfnode import wire

log = logging.getLogger(__name__)

STATUS_INTERVAL = 2.0  # seconds between "still waiting" notes the server sends to registered nodes


def host_address() -> str:
    """This host's address as peers should dial it, from local configuration only (no packet leaves the host).

    Order: TFOY_HOST, SPARK_LOCAL_IP, then the host name's resolution preferring a non-loopback address.
    """
    for var in ("TFOY_HOST", "SPARK_LOCAL_IP"):
        if os.environ.get(var):
            return os.environ[var]
    name = socket.gethostname()
    try:
        addrs = [info[4][0] for info in socket.getaddrinfo(name, None, socket.AF_INET, socket.SOCK_STREAM)]
    except OSError:
        addrs = []
    for addr in addrs + _interface_addresses():  # host name first; else the first up interface (as Spark does)
        if not addr.startswith("127."):
            return addr
    return "127.0.0.1"


def _interface_addresses() -> list[str]:
    """IPv4 addresses of this host's interfaces, read from the kernel (Linux ioctl); [] where unsupported."""
    try:
        import fcntl
        import struct

        names = [name for _, name in socket.if_nameindex()]
    except (ImportError, OSError, AttributeError):
        return []
    found = []
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        for name in names:
            try:
                packed = fcntl.ioctl(s.fileno(), 0x8915, struct.pack("256s", name[:15].encode()))  # SIOCGIFADDR
            except OSError:
                continue
            found.append(socket.inet_ntoa(packed[20:24]))
    return found


@dataclass(frozen=True)
class Slot:
    """The role an executor will play; fixed by the driver before any node starts."""

    executor_id: int
    job_name: str
    task_index: int

    def describe(self) -> str:
        return f"executor {self.executor_id} ({self.job_name}:{self.task_index})"


@dataclass
class NodeState:
    slot: Slot
    info: dict[str, Any]
    conn: socket.socket
    status: str = "registered"  # registered → running → done | failed | gone
    traceback: str | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)


class ReservationServer:
    """Driver side: collects one registration per slot, then hands every node the cluster spec."""

    def __init__(self, slots: list[Slot], secret: bytes, host: str | None = None) -> None:
        self.slots = {s.executor_id: s for s in slots}
        self.secret = secret
        self.nodes: dict[int, NodeState] = {}
        self.tensorboard_url: str | None = None
        self.cluster_spec: dict[str, list[str]] | None = None
        self._cond = threading.Condition()
        self._closed = False
        self._error: str | None = None
        self._sock = socket.create_server(("0.0.0.0", 0))
        self.address = (host or host_address(), self._sock.getsockname()[1])
        threading.Thread(target=self._accept_loop, name="tfoy-reservation", daemon=True).start()

    # ---- registration ------------------------------------------------------------------------------------------
    def _accept_loop(self) -> None:
        while not self._closed:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        try:
            conn.settimeout(30)
            msg, _ = wire.recv(conn, self.secret)
            conn.settimeout(None)
        except (OSError, ValueError) as e:
            log.warning("reservation: dropped a connection that did not register properly: %s", e)
            conn.close()
            return
        node = self._register(conn, msg)
        if node is None:
            return
        while True:
            try:
                msg, _ = wire.recv(conn, self.secret)
            except (OSError, ValueError):
                break
            self._on_message(node, msg)
        with self._cond:
            if node.status not in ("done", "failed"):
                node.status = "gone"
            self._cond.notify_all()

    def _register(self, conn: socket.socket, msg: dict[str, Any]) -> NodeState | None:
        eid = msg.get("executor_id")
        slot = self.slots.get(eid) if isinstance(eid, int) else None
        with self._cond:
            problem = None
            if msg.get("op") != "register" or slot is None:
                problem = f"unexpected registration {msg!r}"
            elif eid in self.nodes:
                problem = f"executor {eid} registered twice (a retried start task?)"
            elif self.cluster_spec is not None or self._error:
                problem = "registration arrived after the reservation closed"
            if problem:
                log.warning("reservation: %s", problem)
                self._safe_send(conn, {"op": "error", "message": problem})
                conn.close()
                return None
            node = NodeState(slot=slot, info=msg, conn=conn)
            self.nodes[eid] = node
            log.info("reservation: %s registered at %s:%s", slot.describe(), msg.get("host"), msg.get("port"))
            if len(self.nodes) == len(self.slots):
                addrs = {(n.slot.job_name, n.slot.task_index): f"{n.info['host']}:{n.info['port']}"
                         for n in self.nodes.values()}
                self.cluster_spec = cs.build_cluster_spec(addrs)
                for n in self.nodes.values():
                    n.status = "running"
                    self._safe_send(n.conn, {"op": "cluster", "cluster_spec": self.cluster_spec})
            self._cond.notify_all()
        return node

    def _on_message(self, node: NodeState, msg: dict[str, Any]) -> None:
        op = msg.get("op")
        with self._cond:
            if op == "done":
                node.status = "done"
            elif op == "failed":
                node.status, node.traceback = "failed", msg.get("traceback", "")
                log.error("%s failed:\n%s", node.slot.describe(), node.traceback)
            elif op == "tensorboard":
                self.tensorboard_url = msg.get("url")
            self._cond.notify_all()

    def _safe_send(self, conn: socket.socket, msg: dict[str, Any]) -> bool:
        try:
            wire.send(conn, self.secret, msg)
            return True
        except OSError:
            return False

    def progress(self) -> str:
        """'k of n nodes registered (…); missing: …' — the sentence every timeout message uses."""
        with self._cond:
            got = [self.slots[e].describe() for e in sorted(self.nodes)]
            missing = [s.describe() for e, s in sorted(self.slots.items()) if e not in self.nodes]
        return (f"{len(got)} of {len(self.slots)} nodes registered ({', '.join(got) or 'none'}); "
                f"missing: {', '.join(missing) or 'none'}")

    def await_reservations(self, timeout: float, abort: Callable[[], str | None] = lambda: None) -> dict:
        """Blocks until every slot registered; TimeoutError naming registered and missing nodes otherwise.

        `abort` is polled; a non-None return (e.g. the start job's error) ends the wait with RuntimeError.
        Registered nodes are sent a progress note every STATUS_INTERVAL so their own timeouts can say the same.
        """
        deadline = time.monotonic() + timeout
        next_note = 0.0
        while True:
            with self._cond:
                if self.cluster_spec is not None:
                    return self.cluster_spec
                nodes = list(self.nodes.values())
            reason = abort()
            if reason:
                self.fail_reservation(f"start job failed: {reason}")
                raise RuntimeError(f"TFCluster.run: {self.progress()}; start job failed:\n{reason}")
            now = time.monotonic()
            if now >= deadline:
                message = f"reservation timed out after {timeout:g}s: {self.progress()}"
                self.fail_reservation(message)
                raise TimeoutError(message)
            if now >= next_note:
                for n in nodes:
                    self._safe_send(n.conn, {"op": "waiting", "progress": self.progress()})
                next_note = now + STATUS_INTERVAL
            with self._cond:
                self._cond.wait(min(0.5, deadline - now))

    def fail_reservation(self, message: str) -> None:
        with self._cond:
            self._error = message
            nodes = list(self.nodes.values())
        for n in nodes:
            self._safe_send(n.conn, {"op": "error", "message": message})

    # ---- control ----------------------------------------------------------------------------------------------
    def broadcast(self, msg: dict[str, Any]) -> None:
        with self._cond:
            nodes = list(self.nodes.values())
        for n in nodes:
            with n.lock:
                self._safe_send(n.conn, msg)

    def failures(self) -> list[NodeState]:
        with self._cond:
            return [n for n in self.nodes.values() if n.status == "failed"]

    def wait_finished(self, which: Callable[[NodeState], bool], timeout: float) -> list[NodeState]:
        """Waits until the selected nodes are done, failed or gone; returns those still running at timeout."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                pending = [n for n in self.nodes.values() if which(n) and n.status in ("registered", "running")]
                remaining = deadline - time.monotonic()
                if not pending or remaining <= 0:
                    return pending
                self._cond.wait(min(remaining, 1.0))

    def close(self) -> None:
        self._closed = True
        self._sock.close()
        with self._cond:
            nodes = list(self.nodes.values())
        for n in nodes:
            try:
                n.conn.close()
            except OSError:
                pass


class ReservationClient:
    """Node side: registers, waits (bounded) for the cluster spec, then listens for control messages."""

    def __init__(self, address: tuple[str, int], secret: bytes, connect_timeout: float = 60) -> None:
        self.secret = secret
        self.address = address
        self._send_lock = threading.Lock()
        try:
            self.sock = socket.create_connection(address, timeout=connect_timeout)
        except OSError as e:
            raise ConnectionError(f"cannot reach the reservation server at {address[0]}:{address[1]}: {e}") from e
        self.sock.settimeout(None)

    def register(self, info: dict[str, Any], timeout: float) -> dict[str, list[str]]:
        self.send({"op": "register", **info})
        deadline = time.monotonic() + timeout
        progress = "no progress note received from the driver"
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"no cluster spec from the driver at {self.address[0]}:{self.address[1]} after "
                                   f"{timeout:g}s; last driver note: {progress}")
            self.sock.settimeout(remaining)
            try:
                msg, _ = wire.recv(self.sock, self.secret)
            except TimeoutError:
                continue
            finally:
                self.sock.settimeout(None)
            op = msg.get("op")
            if op == "cluster":
                return msg["cluster_spec"]
            if op == "waiting":
                progress = msg.get("progress", progress)
            elif op == "error":
                raise RuntimeError(f"reservation refused by the driver: {msg.get('message')}")

    def send(self, msg: dict[str, Any]) -> None:
        with self._send_lock:
            wire.send(self.sock, self.secret, msg)

    def listen(self, on_message: Callable[[dict[str, Any]], None], on_lost: Callable[[], None]) -> threading.Thread:
        """Runs `on_message` for each control message in a daemon thread; `on_lost` when the driver goes away."""

        def loop() -> None:
            while True:
                try:
                    msg, _ = wire.recv(self.sock, self.secret)
                except (OSError, ValueError):
                    on_lost()
                    return
                on_message(msg)

        thread = threading.Thread(target=loop, name="tfoy-control", daemon=True)
        thread.start()
        return thread
