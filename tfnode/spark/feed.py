"""InputMode.SPARK feeding: Spark partitions → batches of numpy columns → a bounded buffer in the TF process.

Why not TFoS's way: it pushes one record per multiprocessing-proxy round trip into unbounded queues (~1.8k
records/s) and waits for every record to be consumed. Here a feeding task turns up to `chunk_records` records into
column arrays, sends them as one authenticated frame (`tfnode.spark.wire`) to the TF process on its executor, and the
TF process keeps at most `capacity` chunks: a full buffer stops reading the socket, so the feeder blocks
(back-pressure) instead of filling memory. When the TF process dies its sockets close, so the feeding task fails
at once (after REPORT_GRACE) with the traceback the TF process left in its state folder.

No wait is open-ended: both sides of a feeding connection give up after the task's feed_timeout (the TF side a
little later, see `_tf_side_wait`), DataFeed waits for data at most `timeout`, and when map_fun calls terminate()
a training feeder stops at its next chunk instead of sending the rest of its partition.

Batches never wait for records of another partition once the current one has ended, so an inference RDD whose
size does not divide by the batch size gets short last batches instead of a hang.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from tfnode.spark import wire
from tfnode.spark.columns import columns_to_rows, from_wire, results_to_wire
from tfnode.spark.listener import Listener

log = logging.getLogger(__name__)

CAPACITY_CHUNKS = 8
HELLO_TIMEOUT = 30.0  # for a new feeding connection's hello
DEFAULT_FEED_TIMEOUT = 600.0  # TFCluster.train/inference's default, for a hello that names none
MAX_FEED_TIMEOUT = 7 * 24 * 3600.0
DATA_TIMEOUT = 24 * 3600.0  # DataFeed's wait for data; the driver may run long Spark stages before it feeds


def feed_connection_limit() -> int:
    """Feeding tasks served at once by one TF process: Spark runs at most one task per executor core on it (at
    most this host's CPUs, as a rule), doubled plus headroom for retried and speculative tasks."""
    return 2 * (os.cpu_count() or 8) + 8


def _tf_side_wait(feed_timeout: float) -> float:
    """How long the TF process waits on a feeding task. Longer than the task's own feed_timeout, so that when both
    sides give up it is the feeding task that reports why (with its own, clearer message)."""
    return feed_timeout + min(feed_timeout, 60.0)


@dataclass
class _Chunk:
    conn: _FeedConn
    columns: list[np.ndarray]
    tuple_mode: bool
    offset: int = 0

    @property
    def remaining(self) -> int:
        return len(self.columns[0]) - self.offset


@dataclass
class _End:
    conn: _FeedConn


class _FeedConn:
    """One feeding task's connection; results of inference go back on it.

    `outstanding` counts records handed out whose results have not been sent; once the partition has ended and
    none are outstanding the connection is closed (the feeding task waits for nothing more).
    """

    def __init__(self, conn: wire.Connection, partition: int, train_mode: bool, feed_timeout: float) -> None:
        self.conn, self.partition, self.train_mode, self.feed_timeout = conn, partition, train_mode, feed_timeout
        self.outstanding = 0
        self.ended = False

    def send(self, header: dict[str, Any], arrays: list[np.ndarray] = ()) -> None:
        self.conn.send(header, arrays, timeout=self.feed_timeout)

    def settle(self) -> None:
        if self.ended and self.outstanding <= 0:
            self.conn.close()


class NodeFeed:
    """The feed endpoint inside a TF process (TFoS's `ctx.mgr`): a local TCP server and a bounded chunk buffer.

    Every wait on a feeding task is bounded by the feed_timeout that task announced in its hello (see
    `_tf_side_wait`); at most `max_connections` feeding tasks are served at once.
    """

    def __init__(self, key: bytes, capacity: int = CAPACITY_CHUNKS, *, host: str = "127.0.0.1",
                 max_connections: int | None = None, timeouts: wire.Timeouts = wire.DEFAULT_TIMEOUTS,
                 hello_timeout: float = HELLO_TIMEOUT) -> None:
        self.key = key
        self.queue: queue.Queue[_Chunk | _End] = queue.Queue(maxsize=capacity)
        self.end_of_feed = threading.Event()
        self.terminated = threading.Event()
        self.hello_timeout = hello_timeout
        self.host = host
        self._listener = Listener(host, key, self._serve,
                                       max_connections=max_connections or feed_connection_limit(),
                                       name="tfoy-feed", timeouts=timeouts)
        self.port = self._listener.port

    def _put(self, item: _Chunk | _End, timeout: float) -> str:
        """'accepted', 'terminated', or 'timeout' when the buffer stayed full (TF took no data) for `timeout`."""
        deadline = time.monotonic() + timeout
        while not self.terminated.is_set():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return "timeout"
            try:
                self.queue.put(item, timeout=min(0.2, remaining))
                return "accepted"
            except queue.Full:
                continue
        return "terminated"

    def _serve(self, conn: wire.Connection) -> None:
        try:
            hello, _ = conn.recv(self.hello_timeout, "a feeding task's hello")
            if hello.get("op") != "hello":
                raise ValueError(f"expected a hello, got {hello.get('op')!r}")
            timeout = min(max(float(hello.get("timeout", DEFAULT_FEED_TIMEOUT)), 1e-3), MAX_FEED_TIMEOUT)
            fc = _FeedConn(conn, int(hello["partition"]), hello["mode"] == "train", timeout)
            self._take(fc)
        except (TimeoutError, wire.AuthError) as e:
            log.warning("feed: dropped the feeding task at %s: %s", conn.peer, e)
            conn.close()
        except (OSError, ValueError, KeyError, TypeError, IndexError) as e:
            log.debug("feed connection from %s ended: %s", conn.peer, e)
            conn.close()

    def _take(self, fc: _FeedConn) -> None:
        """Buffers the partition's chunks; answers its end (train: accepted/terminated) and leaves an inference
        connection open for the results."""
        wait = _tf_side_wait(fc.feed_timeout)
        while True:
            msg, arrays = fc.conn.recv(wait, f"the next chunk of partition {fc.partition}")
            op = msg.get("op")
            if op == "chunk":
                arrays = from_wire(arrays, msg.get("narrow", []), msg.get("exact", []))
                item: _Chunk | _End = _Chunk(fc, arrays, bool(msg["tuple"]))
            elif op == "end":
                item = _End(fc)
            else:
                raise ValueError(f"unexpected {op!r} from the feeding task of partition {fc.partition}")
            outcome = self._put(item, wait)
            if outcome == "timeout":
                raise TimeoutError(f"partition {fc.partition}: the TF process took no data for {wait:g}s (its "
                                   f"buffer of {self.queue.maxsize} chunks stayed full)")
            if outcome == "terminated":
                fc.send({"op": "terminated"})
                if op == "chunk":
                    self._drain(fc, wait)
                fc.conn.close()
                return
            if op == "end":
                if fc.train_mode:
                    fc.send({"op": "accepted"})
                    fc.conn.close()
                return

    def _drain(self, fc: _FeedConn, wait: float) -> None:
        """Drops what the feeding task had in flight until its end or close: it stops at its next chunk once it
        reads `terminated`, and closing with its data unread would reset the connection before it could."""
        while fc.conn.recv(wait, f"the end of partition {fc.partition} after terminated")[0].get("op") != "end":
            pass

    def close(self) -> None:
        self.terminate()
        self._listener.close()

    def terminate(self) -> None:
        """Stops taking data: feeders are told `terminated` and return; queued chunks are dropped."""
        self.terminated.set()
        while True:
            try:
                self.queue.get_nowait()
            except queue.Empty:
                return


class DataFeed:
    """TFoS's TFNode.DataFeed over a NodeFeed: next_batch / should_stop / batch_results / terminate, plus dataset().

    `next_batch(n)` returns a list of records (tuples when records were tuples) or, with `input_mapping`
    ({column: tensor name}), a dict {tensor name: array} over the record's fields in sorted column order.
    `timeout`: how long a batch may wait for data from Spark before TimeoutError (the feed's end, terminate() or
    the driver going away end the wait earlier; the default allows for long Spark stages before the feed starts).
    """

    def __init__(self, mgr: NodeFeed, train_mode: bool = True, qname_in: str = "input", qname_out: str = "output",
                 input_mapping: dict[str, str] | None = None, timeout: float = DATA_TIMEOUT) -> None:
        if not isinstance(mgr, NodeFeed):
            raise TypeError(f"DataFeed needs ctx.mgr of an InputMode.SPARK node, got {type(mgr).__name__}")
        if isinstance(timeout, bool) or not isinstance(timeout, int | float) or not timeout > 0:
            raise ValueError(f"DataFeed: timeout must be a positive number of seconds, got {timeout!r}")
        self.mgr = mgr
        self.train_mode = train_mode
        self.qname_in, self.qname_out = qname_in, qname_out
        self.input_tensors = [input_mapping[c] for c in sorted(input_mapping)] if input_mapping else None
        self._current: _Chunk | None = None
        self._pending: deque[list[Any]] = deque()  # [conn, count] of records handed out, awaiting results
        self._done = False
        self.timeout = timeout

    # ---- batches as columns (the fast path, used by dataset()) --------------------------------------------------
    def next_columns(self, batch_size: int) -> tuple[list[np.ndarray], bool]:
        """Up to batch_size records as column arrays; short at the end of a partition or of the feed; empty when
        the feed has ended."""
        if isinstance(batch_size, bool) or not isinstance(batch_size, int | np.integer) or batch_size < 1:
            # 0 would return [] without consuming: a `while not should_stop()` loop spinning until feed_timeout
            raise ValueError(f"DataFeed: batch_size must be a whole number >= 1, got {batch_size!r}")
        parts: list[list[np.ndarray]] = []
        tuple_mode = False
        count = 0
        while count < batch_size:
            chunk = self._current or self._next_item(block=count == 0 or self.train_mode)
            if chunk is None:
                break
            if isinstance(chunk, _End):
                if self.train_mode:
                    continue
                self._end_partition(chunk.conn)
                if count:
                    break
                continue
            self._current = chunk
            take = min(batch_size - count, chunk.remaining)
            parts.append([c[chunk.offset:chunk.offset + take] for c in chunk.columns])
            tuple_mode = chunk.tuple_mode
            if not self.train_mode:
                self._pending.append([chunk.conn, take])
                chunk.conn.outstanding += take
            chunk.offset += take
            count += take
            if chunk.remaining == 0:
                self._current = None
        if not parts:
            return [], tuple_mode
        if len(parts) == 1:
            return parts[0], tuple_mode
        return [np.concatenate(cols) for cols in zip(*parts, strict=True)], tuple_mode

    def _end_partition(self, conn: _FeedConn) -> None:
        """Tells an inference feeding task all its records were handed out (`eof`)."""
        conn.ended = True
        try:
            conn.send({"op": "eof"})
        except OSError:
            log.warning("partition %d: its feeding task went away", conn.partition)
        conn.settle()

    def _next_item(self, block: bool) -> _Chunk | _End | None:
        deadline = time.monotonic() + self.timeout
        while True:
            if self.mgr.terminated.is_set():
                self._done = True
                return None
            try:
                return self.mgr.queue.get(timeout=0.1) if block else self.mgr.queue.get_nowait()
            except queue.Empty:
                if self.mgr.end_of_feed.is_set() and self.mgr.queue.empty():
                    self._done = True
                    return None
                if not block:
                    return None
            if time.monotonic() >= deadline:
                raise TimeoutError(f"DataFeed: no data from Spark for {self.timeout:g}s while waiting for the next "
                                   "batch (is cluster.train()/inference() feeding this node? DataFeed(timeout=...) "
                                   "waits longer)")

    # ---- TFoS API ------------------------------------------------------------------------------------------------
    def next_batch(self, batch_size: int) -> list[Any] | dict[str, np.ndarray]:
        columns, tuple_mode = self.next_columns(batch_size)
        if self.input_tensors is not None:
            if not columns:
                return {t: np.empty((0,)) for t in self.input_tensors}
            return dict(zip(self.input_tensors, columns, strict=False))
        return columns_to_rows(columns, tuple_mode) if columns else []

    def should_stop(self) -> bool:
        """True once the feed has ended (or was terminated) and every buffered record was handed out."""
        if self._done or self.mgr.terminated.is_set():
            return True
        if self._current is None and self.mgr.end_of_feed.is_set() and self.mgr.queue.empty():
            self._done = True
        return self._done

    def batch_results(self, results: Iterable[Any]) -> None:
        """Sends inference results back to the feeding tasks, in the order records were handed out."""
        results = list(results) if not isinstance(results, np.ndarray) else results
        start = 0
        while start < len(results):
            if not self._pending:
                raise ValueError(f"batch_results: {len(results) - start} more results than records handed out")
            entry = self._pending[0]
            conn, count = entry
            take = min(count, len(results) - start)
            try:
                _send_results(conn, results[start:start + take])
            except OSError as e:  # that feeding task failed or was cancelled; the others still want theirs
                log.warning("partition %d: results dropped, its feeding task went away (%s)", conn.partition, e)
            start += take
            entry[1] -= take
            conn.outstanding -= take
            if entry[1] == 0:
                self._pending.popleft()
            conn.settle()

    def terminate(self) -> None:
        """Stops the feed for this node: pending feeders return without sending the rest of their partitions."""
        self.mgr.terminate()
        self._done = True

    def dataset(self, batch_size: int, output_signature: Any = None):
        """A tf.data.Dataset of batches from this feed (column tensors; a tuple for tuple records).

        Ends when the feed ends. `output_signature` defaults to the dtypes/shapes of the first batch.
        """
        import tensorflow as tf

        first, tuple_mode = self.next_columns(batch_size)
        if not first:
            raise RuntimeError("DataFeed.dataset(): the feed ended before any record arrived")

        def gen() -> Iterator[Any]:
            columns, mode = first, tuple_mode
            while columns:
                yield tuple(columns) if mode else columns[0]
                columns, mode = self.next_columns(batch_size)

        if output_signature is None:
            specs = [tf.TensorSpec((None, *c.shape[1:]), tf.as_dtype(c.dtype)) for c in first]
            output_signature = tuple(specs) if tuple_mode else specs[0]
        return tf.data.Dataset.from_generator(gen, output_signature=output_signature)


def _send_results(conn: _FeedConn, results: Any) -> None:
    header, arrays = results_to_wire(results)
    conn.send({"op": "results", **header}, arrays)
