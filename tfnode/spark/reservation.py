"""Reservation and control between the Spark driver and the TF nodes: authenticated JSON over TCP.

Why: TFoS's reservation server takes unauthenticated pickles, finds its address by connecting to 8.8.8.8 and lets
executors wait forever. Here every frame is HMAC'd with a per-cluster secret (`tfnode.spark.wire`), the address comes
from local name resolution only, and both sides time out with a message naming who registered and who is missing.

The registration connection stays open for the node's lifetime and doubles as the control channel: the driver
pushes `end_feed` / `stop`, the node reports `done` / `failed` (with its traceback) / `tensorboard`. A node whose
driver connection drops exits, so a dead driver leaves no TF process behind. Both ends ping each other and
count the other as gone after a long silence, so a vanished host (no FIN, no RST) is noticed too.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tfnode import cluster_spec as cs
from tfnode import progress
from tfnode.spark import wire
from tfnode.spark.listener import Listener

log = logging.getLogger(__name__)

STATUS_INTERVAL = 2.0  # seconds between "still waiting" notes the server sends to registered nodes
REGISTER_TIMEOUT = 30.0  # for a new connection's registration
HEARTBEAT_INTERVAL = 10.0  # seconds between pings on a node connection, both ways
IDLE_TIMEOUT = 300.0  # silence (not even a ping) after which the other end counts as gone; generous for busy GILs
MAX_TRACEBACK = 60_000  # characters of a failure report kept: even at 12 bytes each as JSON it fits in MAX_HEADER


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
    conn: wire.Connection
    status: str = "registered"  # registered → running → done | failed | gone
    traceback: str | None = None


def connection_limit(nodes: int) -> int:
    """Connections the driver serves at once: every node holds one for its lifetime; the headroom is for retried
    start tasks and strangers, each held at most for the handshake and registration timeouts."""
    return nodes + max(8, nodes // 4)


def _fit_traceback(msg: dict[str, Any]) -> dict[str, Any]:
    """Keeps the end of an oversized traceback (where the error is) so the report fits in a frame header."""
    tb = msg.get("traceback")
    if isinstance(tb, str) and len(tb) > MAX_TRACEBACK:
        return {**msg, "traceback": f"[{len(tb) - MAX_TRACEBACK} characters cut]\n{tb[-MAX_TRACEBACK:]}"}
    return msg


class ReservationServer:
    """Driver side: collects one registration per slot, then hands every node the cluster spec.

    Every node connection is watched: the driver pings each node every `heartbeat` seconds and drops a node it
    has heard nothing from (not even its heartbeat) for `idle_timeout` seconds, so a hung or vanished node host
    shows up as "gone" instead of holding a thread forever.
    """

    def __init__(self, slots: list[Slot], secret: bytes, host: str | None = None, *,
                 max_connections: int | None = None, timeouts: wire.Timeouts = wire.DEFAULT_TIMEOUTS,
                 register_timeout: float = REGISTER_TIMEOUT, heartbeat: float = HEARTBEAT_INTERVAL,
                 idle_timeout: float = IDLE_TIMEOUT) -> None:
        self.slots = {s.executor_id: s for s in slots}
        self.secret = secret
        self.nodes: dict[int, NodeState] = {}
        self.tensorboard_url: str | None = None
        self.cluster_spec: dict[str, list[str]] | None = None
        self.max_connections = max_connections or connection_limit(len(slots))
        self.register_timeout, self.heartbeat, self.idle_timeout = register_timeout, heartbeat, idle_timeout
        self._cond = threading.Condition()
        self._stopped = threading.Event()
        self._error: str | None = None
        self._listener = Listener("0.0.0.0", secret, self._serve, max_connections=self.max_connections,
                                       name="tfoy-reservation", timeouts=timeouts)
        self.address = (host or host_address(), self._listener.port)
        threading.Thread(target=self._heartbeat_loop, name="tfoy-reservation-heartbeat", daemon=True).start()

    # ---- registration ------------------------------------------------------------------------------------------
    def _serve(self, conn: wire.Connection) -> None:
        try:
            msg, _ = conn.recv(self.register_timeout, "a registration")
        except (OSError, ValueError) as e:
            log.warning("reservation: dropped a connection that did not register properly: %s", e)
            conn.close()
            return
        node = self._register(conn, msg)
        if node is not None:
            self._follow(node)

    def _follow(self, node: NodeState) -> None:
        """Reads the node's reports until its connection ends, it falls silent or it breaks the protocol."""
        waiting_for = f"a report or heartbeat from {node.slot.describe()}"
        while True:
            try:
                msg, _ = node.conn.recv(self.idle_timeout, waiting_for)
            except wire.IdleTimeout as e:
                log.warning("reservation: %s for %gs (no heartbeat either); dropping the node", e, self.idle_timeout)
                break
            except (TimeoutError, wire.AuthError) as e:
                log.warning("reservation: %s; dropping the node", e)
                break
            except (OSError, ValueError) as e:
                log.info("reservation: connection of %s ended: %s", node.slot.describe(), e)
                break
            self._on_message(node, msg)
        node.conn.close()
        with self._cond:
            if node.status not in ("done", "failed"):
                node.status = "gone"
            self._cond.notify_all()

    def _register(self, conn: wire.Connection, msg: dict[str, Any]) -> NodeState | None:
        eid = msg.get("executor_id")
        slot = self.slots.get(eid) if isinstance(eid, int) else None
        with self._cond:
            problem = None
            if msg.get("op") != "register" or slot is None:
                problem = f"unexpected registration {msg!r} from {conn.peer}"
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
        if op == "ping":
            return
        with self._cond:
            if op == "done":
                node.status = "done"
            elif op == "failed":
                node.status, node.traceback = "failed", msg.get("traceback", "")
                log.error("%s failed:\n%s", node.slot.describe(), node.traceback)
            elif op == "tensorboard":
                self.tensorboard_url = msg.get("url")
            elif op == "progress":
                log.info("%s: %s", node.slot.describe(), progress.describe(msg.get("progress")))
            self._cond.notify_all()

    def _safe_send(self, conn: wire.Connection, msg: dict[str, Any]) -> bool:
        try:
            conn.send(msg)
            return True
        except (OSError, ValueError) as e:
            log.debug("reservation: could not send %s to %s: %s", msg.get("op"), conn.peer, e)
            return False

    def _heartbeat_loop(self) -> None:
        while not self._stopped.wait(self.heartbeat):
            with self._cond:
                nodes = [n for n in self.nodes.values() if not n.conn.closed]
            for n in nodes:
                self._safe_send(n.conn, {"op": "ping"})

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
            self._safe_send(n.conn, msg)

    def failures(self) -> list[NodeState]:
        with self._cond:
            return [n for n in self.nodes.values() if n.status == "failed"]

    def vanished(self) -> list[NodeState]:
        """Nodes whose connection ended without a report: killed, or their executor or host lost."""
        with self._cond:
            return [n for n in self.nodes.values() if n.status == "gone"]

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
        self._stopped.set()
        self._listener.close()
        with self._cond:
            nodes = list(self.nodes.values())
        for n in nodes:
            n.conn.close()


class ReservationClient:
    """Node side: registers, waits (bounded) for the cluster spec, then listens for control messages.

    From registration on it pings the driver every `heartbeat` seconds, and it counts the driver as lost when
    nothing (not even the driver's heartbeat) arrived for `idle_timeout` seconds.
    """

    def __init__(self, address: tuple[str, int], secret: bytes, connect_timeout: float = 60, *,
                 timeouts: wire.Timeouts = wire.DEFAULT_TIMEOUTS, heartbeat: float = HEARTBEAT_INTERVAL,
                 idle_timeout: float = IDLE_TIMEOUT) -> None:
        self.address = address
        self.heartbeat, self.idle_timeout = heartbeat, idle_timeout
        self._stopped = threading.Event()
        try:
            self.conn = wire.Connection.connect(address, secret, timeout=connect_timeout, timeouts=timeouts)
        except OSError as e:
            raise ConnectionError(f"cannot reach the reservation server at {address[0]}:{address[1]}: {e}") from e

    def register(self, info: dict[str, Any], timeout: float) -> dict[str, list[str]]:
        self.send({"op": "register", **info})
        threading.Thread(target=self._heartbeat_loop, name="tfoy-heartbeat", daemon=True).start()
        deadline = time.monotonic() + timeout
        progress = "no progress note received from the driver"
        driver = f"the driver at {self.address[0]}:{self.address[1]}"
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"no cluster spec from {driver} after {timeout:g}s; last driver note: {progress}")
            try:
                msg, _ = self.conn.recv(min(remaining, self.idle_timeout), "the cluster spec from the driver")
            except wire.IdleTimeout:
                if deadline - time.monotonic() <= 0:
                    continue
                raise TimeoutError(f"{driver} sent nothing, not even a heartbeat, for {self.idle_timeout:g}s while "
                                   f"this node waited for the cluster spec; last driver note: {progress}") from None
            op = msg.get("op")
            if op == "cluster":
                return msg["cluster_spec"]
            if op == "waiting":
                progress = msg.get("progress", progress)
            elif op == "error":
                raise RuntimeError(f"reservation refused by the driver: {msg.get('message')}")

    def send(self, msg: dict[str, Any]) -> None:
        self.conn.send(_fit_traceback(msg))

    def _heartbeat_loop(self) -> None:
        while not self._stopped.wait(self.heartbeat):
            try:
                self.conn.send({"op": "ping"})
            except OSError:
                return

    def listen(self, on_message: Callable[[dict[str, Any]], None], on_lost: Callable[[], None]) -> threading.Thread:
        """Runs `on_message` for each control message in a daemon thread; `on_lost` when the driver goes away or
        falls silent for `idle_timeout`."""

        def loop() -> None:
            while True:
                try:
                    msg, _ = self.conn.recv(self.idle_timeout, "control messages or heartbeats from the driver")
                except (OSError, ValueError) as e:
                    log.error("driver connection lost: %s", e)
                    self.close()
                    on_lost()
                    return
                if msg.get("op") != "ping":
                    on_message(msg)

        thread = threading.Thread(target=loop, name="tfoy-control", daemon=True)
        thread.start()
        return thread

    def close(self) -> None:
        self._stopped.set()
        self.conn.close()
