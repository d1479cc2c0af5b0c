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

import itertools
import json
import logging
import os
import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Generator, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tfnode.spark import wire

log = logging.getLogger(__name__)

CHUNK_RECORDS = 1024
CAPACITY_CHUNKS = 8
CONNECT_TIMEOUT = 30.0  # for a feeding task to reach the TF process on its own host
HELLO_TIMEOUT = 30.0  # for a new feeding connection's hello
DEFAULT_FEED_TIMEOUT = 600.0  # TFCluster.train/inference's default, for a hello that names none
MAX_FEED_TIMEOUT = 7 * 24 * 3600.0
DATA_TIMEOUT = 24 * 3600.0  # DataFeed's wait for data; the driver may run long Spark stages before it feeds
# A dying TF process writes error.txt, reports to the driver, then closes its feed connections. A feeding task that
# fails at once can beat that report to the driver, which then raises the task's Spark error instead of naming the
# failed node; waiting this long before failing the task lets the report arrive first.
REPORT_GRACE = 1.0


# ---- records <-> columns ------------------------------------------------------------------------------------------
def _small_int_rows(values: list[Any]) -> np.ndarray | None:
    """Lists of ints all in 0..255 (pixels, tokens of small vocabularies) as uint8 rows, ~5x faster than np.array.

    Sent narrow and widened back to int64 on arrival (`narrow` in the chunk header), so the dtype users see is
    the one np.asarray would give."""
    first = values[0]
    if type(first) is not list or not first or type(first[0]) is not int:
        return None
    width = len(first)
    if not all(type(v) is list and len(v) == width for v in values):
        return None
    try:
        buf = b"".join(map(bytes, values))
    except (TypeError, ValueError):
        return None
    return np.frombuffer(buf, dtype=np.uint8).reshape(len(values), width)


def records_to_columns(records: list[Any], partition: int) -> tuple[list[np.ndarray], bool, list[int]]:
    """Stacks records into column arrays; returns (columns, tuple_mode, indices of uint8-narrowed int columns).

    A tuple record (e.g. `(features, label)` or a pyspark Row) gives one column per field; anything else (a list,
    an array, a scalar) is one column. Records of different shapes or types raise ValueError naming the partition.
    """
    tuple_mode = isinstance(records[0], tuple)
    if tuple_mode:
        width = len(records[0])
        for i, r in enumerate(records):
            if not isinstance(r, tuple) or len(r) != width:
                raise ValueError(f"partition {partition}: record {i} is {_describe(r)}, expected a {width}-tuple "
                                 f"like record 0")
        fields = [[r[j] for r in records] for j in range(width)]
    else:
        fields = [records]
    columns = []
    narrow = []
    for j, values in enumerate(fields):
        fast = _small_int_rows(values)
        if fast is not None:
            columns.append(fast)
            narrow.append(j)
            continue
        try:
            col = np.asarray(values)
        except ValueError as e:
            raise ValueError(f"partition {partition}: {_mismatch(values, j, tuple_mode)}") from e
        if col.dtype.hasobject:
            raise ValueError(f"partition {partition}: {_mismatch(values, j, tuple_mode)}")
        columns.append(col)
    return columns, tuple_mode, narrow


def _describe(value: Any) -> str:
    return f"{type(value).__name__} of shape {np.shape(value)}" if not isinstance(value, tuple) else \
        f"a {len(value)}-tuple"


def _mismatch(values: list[Any], field_index: int, tuple_mode: bool) -> str:
    where = f"field {field_index} of " if tuple_mode else ""
    first = np.shape(values[0])
    for i, v in enumerate(values):
        try:
            shape = np.shape(v)
        except ValueError:
            shape = None
        if shape != first or v is None:
            return (f"{where}record {i} has shape {shape} ({type(v).__name__}), expected {first} like record 0 "
                    "(records must all have the same shape)")
    return f"{where}records cannot be stacked into a numeric array (mixed or unsupported types)"


def columns_to_rows(columns: list[np.ndarray], tuple_mode: bool) -> list[Any]:
    return list(zip(*columns, strict=True)) if tuple_mode else list(columns[0])


# ---- TF-process side ---------------------------------------------------------------------------------------------
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
        self._listener = wire.Listener(host, key, self._serve,
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
                for j in msg.get("narrow", ()):
                    arrays[j] = arrays[j].astype(np.int64)
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
    """As one array when the results stack into one; else as JSON, carried in the payload (the header is small)."""
    try:
        arr = np.asarray(results) if not isinstance(results, np.ndarray) else results
        if arr.dtype.hasobject:
            raise TypeError
    except (TypeError, ValueError):
        text = json.dumps([_jsonable(r) for r in results], separators=(",", ":")).encode()
        conn.send({"op": "results", "n": len(results), "json": True}, [np.frombuffer(text, dtype=np.uint8)])
        return
    conn.send({"op": "results", "n": len(arr)}, [arr])


def _jsonable(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return value


# ---- Spark-task side ---------------------------------------------------------------------------------------------
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


def _chunks(records: Iterator[Any], size: int, partition: int) -> Iterator[tuple[dict[str, Any], list[np.ndarray]]]:
    """(chunk header, columns) for every `size` records."""
    while True:
        batch = list(itertools.islice(records, size))
        if not batch:
            return
        columns, tuple_mode, narrow = records_to_columns(batch, partition)
        yield {"op": "chunk", "tuple": tuple_mode, "narrow": narrow}, columns


def arrow_columns(batch: Any, names: list[str], partition: int) -> list[np.ndarray]:
    """numpy columns of an Arrow record batch, without a Python object per value: numbers as they are, lists of
    numbers of one length as 2-D arrays, strings and binaries as fixed-width numpy strings. A null, ragged lists or
    a type with no array form raise ValueError naming the column and the partition."""
    import pyarrow as pa

    out = []
    for name in names:
        col = batch.column(name)
        if col.null_count:
            raise ValueError(f"partition {partition}: column {name!r} has {col.null_count} null value(s)")
        kind = col.type
        if pa.types.is_list(kind) or pa.types.is_large_list(kind) or pa.types.is_fixed_size_list(kind):
            lengths = np.asarray(col.value_lengths())
            width = int(lengths[0]) if len(lengths) else 0
            if len(lengths) and (lengths != width).any():
                raise ValueError(f"partition {partition}: column {name!r} holds lists of different lengths "
                                 f"({width} and {int(lengths[lengths != width][0])})")
            values = col.flatten()
            if not (pa.types.is_integer(values.type) or pa.types.is_floating(values.type)
                    or pa.types.is_boolean(values.type)):
                raise ValueError(f"partition {partition}: column {name!r} is {kind}, not a list of numbers")
            out.append(values.to_numpy(zero_copy_only=False).reshape(len(col), width))
        elif pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_boolean(kind):
            out.append(col.to_numpy(zero_copy_only=False))
        elif pa.types.is_string(kind) or pa.types.is_large_string(kind):
            out.append(np.asarray(col.to_pylist(), dtype=str))
        elif pa.types.is_binary(kind) or pa.types.is_large_binary(kind):
            out.append(np.asarray(col.to_pylist(), dtype=bytes))
        else:
            raise ValueError(f"partition {partition}: column {name!r} is {kind}, which cannot be fed (numbers, "
                             "lists of numbers, strings, binaries)")
    return out


def arrow_chunks(batches: Iterator[Any], names: list[str], size: int,
                 partition: int) -> Iterator[tuple[dict[str, Any], list[np.ndarray]]]:
    """(chunk header, columns) of at most `size` rows from Arrow record batches (a DataFrame's mapInArrow)."""
    for batch in batches:
        for start in range(0, batch.num_rows, size):
            piece = batch.slice(start, size)
            # rows are tuples even of one column, as the Rows of `df.rdd` that TFoS feeds are
            yield {"op": "chunk", "tuple": True, "narrow": []}, arrow_columns(piece, names, partition)


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
              chunks: Iterator[tuple[dict[str, Any], list[np.ndarray]]], sent: list[int], watch: bool) -> bool:
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
        _send(conn, target, partition, header, columns)
        sent[0] += len(columns[0])
    _send(conn, target, partition, {"op": "end"})
    return True


def feed_partition(target: FeedTarget, partition: int, records: Iterator[Any] | None = None,
                   chunks: Iterator[tuple[dict[str, Any], list[np.ndarray]]] | None = None) -> int:
    """Sends one partition for training (records of an RDD, or ready column chunks: arrow_chunks); returns the
    record count once the TF process has buffered all of it."""
    conn = _connect(target, partition, "train")
    sent = [0]
    if chunks is None:
        chunks = _chunks(iter(records or ()), target.chunk_records, partition)
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
                    chunks: Iterator[tuple[dict[str, Any], list[np.ndarray]]] | None = None) -> Iterator[Any]:
    """Sends one partition for inference (records of an RDD, or ready column chunks: arrow_chunks) and yields the
    results TF returns through batch_results()."""
    conn = _connect(target, partition, "inference")
    state: dict[str, Any] = {"sent": None, "error": None}
    if chunks is None:
        chunks = _chunks(iter(records or ()), target.chunk_records, partition)

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
        values = json.loads(bytes(arrays[0])) if msg.get("json") else arrays[0].tolist()
        received += len(values)
        yield from values
    return False
