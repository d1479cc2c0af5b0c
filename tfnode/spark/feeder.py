"""The Spark-task side of InputMode.SPARK feeding: a partition's records (or a DataFrame's Arrow batches) sent as
column chunks to the TF process that takes them, on its own executor or, when that one takes no data, elsewhere.

A feeding task fails at once (after REPORT_GRACE) when the TF process it feeds dies, with the traceback that
process left in its state folder; feed.py is the other end.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tfnode.spark import wire
from tfnode.spark.columns import Chunk, record_chunks, results_from_wire, to_wire

log = logging.getLogger(__name__)

CHUNK_RECORDS = 1024
CONNECT_TIMEOUT = 30.0  # for a feeding task to reach the TF process on its own host
# A dying TF process writes error.txt, reports to the driver, then closes its feed connections. A feeding task that
# fails at once can beat that report to the driver, which then raises the task's Spark error instead of naming the
# failed node; waiting this long before failing the task lets the report arrive first.
REPORT_GRACE = 1.0


def state_dir(cluster_id: str, root: str | None = None) -> Path:
    """A node's state folder in its executor's working directory, where feeding tasks on that executor look."""
    return Path(root or os.getcwd()) / ".tfoy" / cluster_id


@dataclass(frozen=True)
class FeedAddress:
    """A node that takes data, as the driver knows it: where a task on an executor without one sends its partition."""

    host: str
    port: int
    node: str  # e.g. "worker:1 on executor 2"


@dataclass(frozen=True)
class FeedTarget:
    """How a feeding task finds a TF process to feed: the one on its executor (written by tfnode.spark.node into its
    state folder) or, on an executor whose node takes no data (ps, evaluator) or that runs none, one of `feeds`."""

    cluster_id: str
    key: bytes
    feed_timeout: float
    chunk_records: int = CHUNK_RECORDS
    feeds: tuple[FeedAddress, ...] = ()

    @property
    def state_dir(self) -> Path:
        return state_dir(self.cluster_id)

    def node_info(self) -> dict[str, Any]:
        path = self.state_dir / "node.json"
        if not path.exists():
            raise RuntimeError(f"no tfoy TF node runs on this executor (no {path}); was TFCluster.run started "
                               "with InputMode.SPARK on these executors?")
        return json.loads(path.read_text())

    def local_feed(self) -> dict[str, Any] | None:
        """node.json of this executor's node if it takes data, else None (a ps/evaluator here, or no node)."""
        path = self.state_dir / "node.json"
        info = json.loads(path.read_text()) if path.exists() else None
        return info if info is not None and info.get("feed_port") is not None else None

    def remote_feed(self, partition: int) -> FeedAddress | None:
        """The node elsewhere this partition goes to when this executor's node takes no data."""
        return self.feeds[partition % len(self.feeds)] if self.feeds and self.local_feed() is None else None

    def failure(self, cause: BaseException, partition: int | None = None) -> RuntimeError:
        remote = self.remote_feed(partition) if partition is not None else None
        if remote is not None:  # its traceback is on another executor; the driver reports it
            return RuntimeError(f"the TF process {remote.node} at {remote.host}:{remote.port}, which partition "
                                f"{partition} was sent to, went away ({cause}); see node.log on its executor")
        error = self.state_dir / "error.txt"
        try:
            info = self.node_info()
            node = f"{info['job_name']}:{info['task_index']} on executor {info['executor_id']}"
        except (RuntimeError, OSError, ValueError, KeyError):
            node = "on this executor"
        for _ in range(20):  # the TF process writes its traceback before its sockets close; allow a moment
            if error.exists():
                time.sleep(REPORT_GRACE)
                return RuntimeError(f"the TF process {node} died:\n{error.read_text()}")
            time.sleep(0.1)
        return RuntimeError(f"the TF process {node} went away without a traceback ({cause}); see node.log in "
                            f"{self.state_dir}")


def feed_address(target: FeedTarget, partition: int) -> tuple[str, int]:
    """The node this partition goes to: the one on this executor, else (a ps or evaluator here, or no node at all,
    e.g. more executors than TF nodes) a feeding node elsewhere, chosen by partition so the load spreads."""
    local = target.local_feed()
    if local is not None:
        return local.get("feed_host", "127.0.0.1"), local["feed_port"]
    path = target.state_dir / "node.json"
    info = json.loads(path.read_text()) if path.exists() else None
    remote = target.remote_feed(partition)
    if remote is None:
        here = f"runs {info['job_name']}:{info['task_index']}, a node without a feed" if info else \
            f"runs no tfoy TF node (no {path})"
        raise RuntimeError(f"partition {partition}: this executor {here}, and no node elsewhere takes data; was "
                           "TFCluster.run started with InputMode.SPARK?")
    here = f"runs {info['job_name']}:{info['task_index']}" if info else "runs no TF node"
    log.info("partition %d: this executor %s (no feed); sending it to %s at %s:%d", partition, here, remote.node,
             remote.host, remote.port)
    return remote.host, remote.port


def _connect(target: FeedTarget, partition: int, mode: str) -> wire.Connection:
    address = feed_address(target, partition)
    timeouts = wire.Timeouts(send=target.feed_timeout)
    try:
        conn = wire.Connection.connect(address, target.key, timeout=CONNECT_TIMEOUT, timeouts=timeouts)
    except OSError as e:
        raise target.failure(e, partition) from e
    conn.send({"op": "hello", "partition": partition, "mode": mode, "timeout": target.feed_timeout})
    return conn


def _send(conn: wire.Connection, target: FeedTarget, partition: int, header: dict[str, Any],
          columns: list[np.ndarray] = ()) -> None:
    try:
        conn.send(header, columns)
    except TimeoutError as e:
        raise TimeoutError(f"partition {partition}: the TF process took no data for {target.feed_timeout:g}s "
                           "(feed_timeout)") from e


def _await(conn: wire.Connection, target: FeedTarget, partition: int, what: str) -> tuple[dict[str, Any], list]:
    try:
        return conn.recv(target.feed_timeout, f"{what} of partition {partition}")
    except wire.IdleTimeout as e:
        raise TimeoutError(f"partition {partition}: nothing from the TF process for {target.feed_timeout:g}s "
                           f"(feed_timeout) while this task waited for {what}") from e


def _send_all(conn: wire.Connection, target: FeedTarget, partition: int,
              chunks: Iterator[Chunk], sent: list[int], watch: bool) -> bool:
    """Streams a partition as chunks, then the end marker; sent[0] counts the records sent so far (a caller
    that loses the connection half-way still knows how many went). With `watch` it looks for a message from the
    TF process before each chunk and returns False at once if that is `terminated` (training sends only read
    their reply at the end)."""
    for header, columns in chunks:
        if watch and conn.pending():
            reply, _ = _await(conn, target, partition, "a message from the TF process")
            if reply.get("op") != "terminated":
                raise ValueError(f"partition {partition}: unexpected {reply.get('op')!r} from the TF process")
            return False
        arrays, exact = to_wire(columns)
        _send(conn, target, partition, {**header, "exact": exact} if exact else header, arrays)
        sent[0] += len(columns[0])
    _send(conn, target, partition, {"op": "end"})
    return True


def feed_partition(target: FeedTarget, partition: int, records: Iterator[Any] | None = None,
                   chunks: Iterator[Chunk] | None = None) -> int:
    """Sends one partition for training (records of an RDD, or ready column chunks: arrow_chunks); returns the
    record count once the TF process has buffered all of it."""
    conn = _connect(target, partition, "train")
    sent = [0]
    if chunks is None:
        chunks = record_chunks(iter(records or ()), target.chunk_records, partition)
    try:
        terminated = not _send_all(conn, target, partition, chunks, sent, watch=True)
        if not terminated:
            reply, _ = _await(conn, target, partition, "the TF process to buffer the end")
            terminated = reply.get("op") == "terminated"
        if terminated:
            log.info("partition %d: the TF node terminated its feed; %d records sent", partition, sent[0])
        return sent[0]
    except ConnectionError as e:
        if (target.state_dir / "finished").exists():
            log.info("partition %d: map_fun has returned; the rest of this partition is not needed", partition)
            return sent[0]
        remote = target.remote_feed(partition)
        if remote is not None:  # finished, or failed/vanished: then the driver raises naming it (TFCluster._run_job)
            log.warning("partition %d: %s closed the feed after %d records (%s)", partition, remote.node, sent[0], e)
            return sent[0]
        raise target.failure(e) from e
    finally:
        conn.close()


def _join(thread: threading.Thread, target: FeedTarget, partition: int) -> None:
    thread.join(target.feed_timeout)
    if thread.is_alive():
        raise TimeoutError(f"partition {partition}: the thread sending records to the TF process did not finish "
                           f"within {target.feed_timeout:g}s (feed_timeout) after the TF process stopped taking them")


def infer_partition(target: FeedTarget, partition: int, records: Iterator[Any] | None = None,
                    chunks: Iterator[Chunk] | None = None) -> Iterator[Any]:
    """Sends one partition for inference (records of an RDD, or ready column chunks: arrow_chunks) and yields the
    results TF returns through batch_results()."""
    conn = _connect(target, partition, "inference")
    state: dict[str, Any] = {"sent": None, "error": None}
    if chunks is None:
        chunks = record_chunks(iter(records or ()), target.chunk_records, partition)

    def sender() -> None:
        total = [0]
        try:
            _send_all(conn, target, partition, chunks, total, watch=False)
        except BaseException as e:  # noqa: BLE001 - re-raised by the consuming side
            state["error"] = e
            conn.close()
        state["sent"] = total[0]

    thread = threading.Thread(target=sender, name=f"tfoy-infer-{partition}", daemon=True)
    thread.start()
    try:
        terminated = yield from _results(conn, target, partition, state, lambda: _join(thread, target, partition))
    finally:
        conn.close()  # a sender still at work (terminated, or an error here) fails at its next send
        _join(thread, target, partition)
    if state["error"] is not None and not terminated:
        raise state["error"]


def _results(conn: wire.Connection, target: FeedTarget, partition: int, state: dict[str, Any],
             join_sender: Callable[[], None]) -> Generator[Any, None, bool]:
    """Yields results until every record sent has one; returns True if the TF process terminated the feed."""
    received = 0
    while state["sent"] is None or received < state["sent"]:
        try:
            msg, arrays = conn.recv(target.feed_timeout, f"results of partition {partition} from the TF process")
        except wire.IdleTimeout as e:
            raise TimeoutError(f"partition {partition}: no results from the TF process for {target.feed_timeout:g}s "
                               "(feed_timeout)") from e
        except OSError as e:
            if isinstance(state["error"], ValueError | TimeoutError):
                raise state["error"] from None
            raise target.failure(e, partition) from e
        op = msg.get("op")
        if op == "eof":  # the TF process has taken the whole partition: the sender is done
            join_sender()
            continue
        if op == "terminated":
            return True
        values = results_from_wire(msg, arrays)
        received += len(values)
        yield from values
    return False
