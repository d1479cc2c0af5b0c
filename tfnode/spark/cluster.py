"""TFoS-compatible `TFCluster`: run / train / inference / shutdown / tensorboard_url, and InputMode.

`from tfnode import TFCluster` gives this module, so `TFCluster.run(...)` and `TFCluster.InputMode.SPARK` read as
they do with tensorflowonspark. The heavy lifting lives elsewhere: reservation (`tfnode.spark.reservation`), the TF
process per executor (`tfnode.spark.node`), feeding (`tfnode.spark.feed`).
"""

from __future__ import annotations

import logging
import math
import os
import secrets
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Any

from tfnode import keras_compat
from tfnode.contract import CHIEF_ROLES, FEEDLESS_ROLES
from tfnode.spark.feeder import FeedAddress, FeedTarget, feed_partition, infer_partition, state_dir
from tfnode.spark.node import NodeLaunch
from tfnode.spark.reservation import NodeState, ReservationServer, Slot

log = logging.getLogger(__name__)

DEFAULT_EPOCHS = 10  # train(num_epochs=0): TFoS's stand-in for "until map_fun stops" (it ends the feed itself)


class InputMode:
    """TENSORFLOW: each node reads its own input (e.g. TFRecords on HDFS). SPARK: cluster.train/inference feed RDDs."""

    TENSORFLOW = 0
    SPARK = 1


def assign_roles(num_executors: int, num_ps: int, master_node: str | None, eval_node: bool) -> list[Slot]:
    """Executor id → role, in TFoS's order: ps first, then the chief/master, the evaluator, workers."""
    roles = ["ps"] * num_ps + ([master_node] if master_node else []) + (["evaluator"] if eval_node else [])
    if len(roles) > num_executors or (len(roles) == num_executors and not master_node):
        raise ValueError(f"{num_executors} executors cannot hold {num_ps} ps, master_node={master_node!r}, "
                         f"eval_node={eval_node} and at least one worker")
    roles += ["worker"] * (num_executors - len(roles))
    counts: dict[str, int] = {}
    slots = []
    for eid, role in enumerate(roles):
        slots.append(Slot(eid, role, counts.get(role, 0)))
        counts[role] = counts.get(role, 0) + 1
    return slots


# ---- executor side ---------------------------------------------------------------------------------------------
def _start_node(template: NodeLaunch, cluster_id: str, slots: list[Slot], _iterator: Any) -> None:
    """The start task: launches this executor's TF process and returns once the whole cluster has registered."""
    import pickle

    from pyspark import TaskContext
    from pyspark.cloudpickle import dumps

    slot = slots[TaskContext.get().partitionId()]
    folder = state_dir(cluster_id)
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    try:
        (folder / "started").open("x").close()
    except FileExistsError:
        raise RuntimeError(f"a TF node of cluster {cluster_id} already runs on this executor ({folder}); "
                           f"{slot.describe()} needs an executor of its own") from None
    launch = replace(template, executor_id=slot.executor_id, job_name=slot.job_name, task_index=slot.task_index,
                     executor_pid=executor_jvm_pid())
    launch_file = folder / "launch.pkl"
    launch_file.write_bytes(dumps(launch, protocol=pickle.HIGHEST_PROTOCOL))
    launch_file.chmod(0o600)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
    if template.keras is not None:
        env.update(keras_compat.keras_env(template.keras))
    with open(folder / "node.log", "ab") as out:
        proc = subprocess.Popen([sys.executable, "-m", "tfnode.spark.node", str(launch_file)], stdout=out, stderr=out,
                                env=env, start_new_session=True)
    deadline = time.monotonic() + template.reservation_timeout + 60
    while time.monotonic() < deadline:
        if (folder / "node.json").exists():
            return
        if (folder / "error.txt").exists():
            raise RuntimeError(f"TF node {slot.describe()} failed to start:\n{(folder / 'error.txt').read_text()}")
        code = proc.poll()
        if code is not None:
            tail = (folder / "node.log").read_text(errors="replace")[-4000:]
            raise RuntimeError(f"TF node {slot.describe()} exited with code {code} while starting:\n{tail}")
        time.sleep(0.2)
    proc.kill()
    raise TimeoutError(f"TF node {slot.describe()}: cluster not complete after {template.reservation_timeout:g}s")


def executor_jvm_pid(pid: int | None = None) -> int | None:
    """The executor JVM this Python task runs under (the nearest `java` ancestor), or None when there is none.

    A node runs in a session of its own (Spark's Python workers come and go; the node must outlive the task that
    started it), so it would escape the kill of its executor's process group: it watches this pid instead."""
    pid = os.getppid() if pid is None else pid
    while pid > 1:
        try:
            if Path(f"/proc/{pid}/comm").read_text().strip() == "java":
                return pid
            pid = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            return None
    return None


def _train_task(target: FeedTarget, index: int, iterator: Any) -> list[int]:
    return [feed_partition(target, index, iterator)]


def _train_arrow_task(target: FeedTarget, columns: list[str], batches: Any) -> Any:
    """mapInArrow: a DataFrame partition's Arrow record batches fed as numpy columns (no Python object per row)."""
    import pyarrow as pa
    from pyspark import TaskContext

    from tfnode.spark.columns import arrow_chunks

    partition = TaskContext.get().partitionId()
    sent = feed_partition(target, partition, chunks=arrow_chunks(batches, columns, target.chunk_records, partition))
    yield pa.RecordBatch.from_pydict({"records": [sent]})


def feed_columns(df: Any, input_mapping: dict[str, str] | None) -> list[str]:
    """The DataFrame columns a feed sends, in the order DataFeed maps them (TFoS: sorted by column name when
    input_mapping is given); a missing column is named with the ones there are."""
    columns = sorted(input_mapping) if input_mapping else list(df.columns)
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise ValueError(f"input_mapping: the DataFrame has no column {', '.join(map(repr, missing))} "
                         f"(its columns: {', '.join(df.columns)})")
    fed: dict[str, str] = {}
    for column in columns if input_mapping else []:  # one column per tensor: a second one would be dropped
        tensor = input_mapping[column].removesuffix(":0")
        if tensor in fed:
            raise ValueError(f"input_mapping: columns {fed[tensor]!r} and {column!r} both map to tensor {tensor!r}")
        fed[tensor] = column
    return columns


def check_feedable(df: Any, columns: list[str]) -> None:
    """On the driver, before any job: every column has a type the Arrow feed turns into an array (numbers,
    booleans, strings, binaries, or arrays of numbers); anything else is named with its type."""
    from pyspark.sql import types as T

    simple = (T.NumericType, T.BooleanType, T.StringType, T.BinaryType)
    for name in columns:
        kind = df.schema[name].dataType
        element = kind.elementType if isinstance(kind, T.ArrayType) else None
        if isinstance(kind, simple) and not isinstance(kind, T.DecimalType):
            continue
        if element is not None and isinstance(element, T.NumericType | T.BooleanType) \
                and not isinstance(element, T.DecimalType):
            continue
        raise ValueError(f"column {name!r} is {kind.simpleString()}, which cannot be fed (numbers, booleans, "
                         "strings, binaries, or arrays of numbers)")


def _infer_task(target: FeedTarget, index: int, iterator: Any) -> Any:
    return infer_partition(target, index, iterator)


def _infer_arrow_task(target: FeedTarget, columns: list[str], batches: Any) -> Any:
    """mapInArrow for inference: Arrow batches in as numpy columns; results out as JSON, one per row (results are
    whatever map_fun passes to batch_results, so they have no schema to declare)."""
    import itertools
    import json

    import pyarrow as pa
    from pyspark import TaskContext

    from tfnode.spark.columns import arrow_chunks

    partition = TaskContext.get().partitionId()
    results = infer_partition(target, partition,
                              chunks=arrow_chunks(batches, columns, target.chunk_records, partition))
    while piece := list(itertools.islice(results, target.chunk_records)):
        yield pa.RecordBatch.from_pydict({"result": [json.dumps(r) for r in piece]})


# ---- driver side -----------------------------------------------------------------------------------------------
def _describe_failures(nodes: list[NodeState]) -> str:
    return "\n".join(f"--- {n.slot.describe()} failed:\n{n.traceback}" for n in nodes)


def _describe_vanished(nodes: list[NodeState]) -> str:
    return (f"{', '.join(n.slot.describe() for n in nodes)} exited without reporting (killed, or its executor "
            "lost?); see node.log in the executor's .tfoy folder")


@dataclass
class TFCluster:
    """A running TF cluster on Spark executors (what TFCluster.run returns)."""

    sc: Any
    server: ReservationServer
    input_mode: int
    cluster_id: str
    cluster_spec: dict[str, list[str]]
    secret: bytes = field(repr=False)
    _jobs: int = 0

    @property
    def cluster_info(self) -> list[dict[str, Any]]:
        return [dict(n.info, job_name=n.slot.job_name, task_index=n.slot.task_index)
                for n in self.server.nodes.values()]

    def _target(self, feed_timeout: float) -> FeedTarget:
        feeds = tuple(FeedAddress(n.info["host"], n.info["feed_port"], n.slot.describe())
                      for n in sorted(self.server.nodes.values(), key=lambda n: n.slot.executor_id)
                      if n.info.get("feed_port") is not None)
        return FeedTarget(self.cluster_id, self.secret, feed_timeout, feeds=feeds)

    def _require_spark_mode(self, what: str) -> None:
        if self.input_mode != InputMode.SPARK:
            raise RuntimeError(f"cluster.{what}() feeds RDDs and needs TFCluster.run(..., input_mode=InputMode.SPARK)")

    def train(self, dataRDD: Any, num_epochs: int = 0, feed_timeout: float = 600, qname: str = "input",
              input_mapping: dict[str, str] | None = None) -> None:
        """Feeds dataRDD (num_epochs times; 0, the default, is 10 as in TFoS) to the TF nodes; returns when every
        record is in a node's buffer.

        Then the feed ends: each node's DataFeed drains its buffer and `should_stop()` turns True, whatever the
        partition sizes were. A node that fails cancels the feeding job; this raises with its traceback.
        A DataFrame is fed over Arrow (mapInArrow: numpy columns straight from Arrow batches, no per-row
        pickling); its columns are `input_mapping`'s keys, sorted as DataFeed(input_mapping=…) maps them, or all.
        """
        self._require_spark_mode("train")
        check_whole("num_epochs", num_epochs, 0)
        num_epochs = num_epochs or DEFAULT_EPOCHS
        if hasattr(dataRDD, "mapInArrow"):
            return self._train_dataframe(dataRDD, num_epochs, feed_timeout, input_mapping)
        rdd = dataRDD if num_epochs <= 1 else self.sc.union([dataRDD] * num_epochs)
        self._run_job(lambda: rdd.mapPartitionsWithIndex(partial(_train_task, self._target(feed_timeout))).sum(),
                      "train")
        self.server.broadcast({"op": "end_feed"})

    def _train_dataframe(self, df: Any, num_epochs: int, feed_timeout: float,
                         input_mapping: dict[str, str] | None) -> None:
        from functools import reduce

        columns = feed_columns(df, input_mapping)
        check_feedable(df, columns)
        selected = df.select(*columns)
        data = selected if num_epochs <= 1 else reduce(lambda a, b: a.unionAll(b), [selected] * num_epochs)
        target = self._target(feed_timeout)
        self._run_job(lambda: data.mapInArrow(partial(_train_arrow_task, target, columns), "records long")
                      .collect(), "train")
        self.server.broadcast({"op": "end_feed"})

    def inference(self, dataRDD: Any, feed_timeout: float = 600, qname: str = "input",
                  input_mapping: dict[str, str] | None = None) -> Any:
        """An RDD of the results map_fun returns through DataFeed.batch_results, partition by partition (lazy).

        A DataFrame is fed over Arrow as in train() (its `input_mapping` keys sorted, or all columns); its results
        come back through JSON, so they are what json makes of them (lists, numbers, strings, dicts)."""
        self._require_spark_mode("inference")
        if hasattr(dataRDD, "mapInArrow"):
            import json

            columns = feed_columns(dataRDD, input_mapping)
            check_feedable(dataRDD, columns)
            task = partial(_infer_arrow_task, self._target(feed_timeout), columns)
            return dataRDD.select(*columns).mapInArrow(task, "result string").rdd.map(lambda row: json.loads(row[0]))
        return dataRDD.mapPartitionsWithIndex(partial(_infer_task, self._target(feed_timeout)))

    def _run_job(self, action: Any, what: str) -> Any:
        """Runs a Spark action; a node reporting failure cancels it and the node's traceback is raised."""
        from pyspark import InheritableThread

        self._jobs += 1
        group = f"tfoy-{self.cluster_id}-{what}-{self._jobs}"
        result: dict[str, Any] = {}

        def body() -> None:
            self.sc.setJobGroup(group, f"tfoy {what}", interruptOnCancel=True)
            try:
                result["value"] = action()
            except BaseException as e:  # noqa: BLE001 - re-raised in the caller's thread
                result["error"] = e

        thread = InheritableThread(target=body, daemon=True)
        thread.start()
        # a node lost mid-job cannot be replaced (its share of the cluster spec is gone): the job stops, naming it,
        # instead of Spark retrying its partitions on the nodes left (a retry on the same executor fails later, and
        # training on the others would go on with a cluster short of a member)
        while thread.is_alive():
            thread.join(0.5)
            if (self.server.failures() or self.server.vanished()) and thread.is_alive():
                self.sc.cancelJobGroup(group)
                thread.join(60)
                break
        failed, vanished = self.server.failures(), self.server.vanished()
        if failed:
            raise RuntimeError(f"TFCluster.{what}: a TF node failed\n{_describe_failures(failed)}") \
                from result.get("error")
        if vanished:
            raise RuntimeError(f"TFCluster.{what}: {_describe_vanished(vanished)}") from result.get("error")
        if "error" in result:
            raise result["error"]
        return result.get("value")

    def shutdown(self, ssc: Any = None, grace_secs: float = 0, timeout: float = 259200) -> None:
        """Waits for chief/workers to return from map_fun (at most `timeout`), stops ps/evaluator nodes after
        `grace_secs`, and makes sure no node process is left. Raises with the traceback of any failed node.

        timeout <= 0 (TFoS: -1) waits as long as chief and workers run; a node that fails, or whose process or
        executor is lost (its connection to the driver ends), still ends the wait at once."""
        if timeout <= 0:
            timeout = math.inf
        if ssc is not None:
            log.warning("shutdown(ssc=...): Spark streaming is not supported; ignoring ssc")
        if self.input_mode == InputMode.SPARK:
            self.server.broadcast({"op": "end_feed"})
        running = self.server.wait_finished(lambda n: n.slot.job_name not in FEEDLESS_ROLES, timeout)
        vanished = self.server.vanished()
        self.server.broadcast({"op": "stop", "grace_secs": grace_secs})
        leftover = self.server.wait_finished(lambda n: True, grace_secs + 30)
        failed = self.server.failures()
        self.server.close()  # nodes still connected lose their lifeline and exit
        if failed:
            raise RuntimeError(f"TFCluster.shutdown: a TF node failed\n{_describe_failures(failed)}")
        if vanished:
            raise RuntimeError(f"TFCluster.shutdown: {_describe_vanished(vanished)}")
        if running:
            raise TimeoutError(f"TFCluster.shutdown: {', '.join(n.slot.describe() for n in running)} still "
                               f"running after {timeout:g}s; stopped")
        if leftover:
            log.warning("shutdown: %s did not stop in time; their connection was closed",
                        ", ".join(n.slot.describe() for n in leftover))

    def tensorboard_url(self) -> str | None:
        return self.server.tensorboard_url


def check_whole(what: str, value: Any, minimum: int) -> None:
    """A count checked on the driver, before any Spark job or TF node starts."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{what} must be a whole number >= {minimum}, got {value!r}")


def _check_run_args(num_executors: Any, num_ps: Any, master_node: Any, reservation_timeout: Any) -> None:
    """Before any Spark job: each argument named with what it must be (a wrong one used to surface as a TypeError
    deep inside, or worse, as a cluster without a chief whose odd executor read every shard)."""
    check_whole("TFCluster.run: num_executors", num_executors, 1)
    check_whole("TFCluster.run: num_ps", num_ps, 0)
    if master_node not in (None, *CHIEF_ROLES):
        raise ValueError(f"TFCluster.run: master_node must be None, {' or '.join(map(repr, CHIEF_ROLES))}, "
                         f"got {master_node!r}")
    if isinstance(reservation_timeout, bool) or not isinstance(reservation_timeout, int | float) \
            or not math.isfinite(reservation_timeout) or reservation_timeout <= 0:
        raise ValueError(f"TFCluster.run: reservation_timeout must be a positive number of seconds, got "
                         f"{reservation_timeout!r}")


def _driver_default_fs(sc: Any) -> str | None:
    """fs.defaultFS as the driver's Hadoop configuration has it (core-site.xml and spark.hadoop.*), what TFoS
    puts in ctx.defaultFS; None when Spark cannot say (the nodes then read their own HADOOP_CONF_DIR)."""
    try:
        return sc._jsc.hadoopConfiguration().get("fs.defaultFS")
    except Exception as e:  # noqa: BLE001 - a driver without a JVM gateway (tests' fakes): the nodes decide
        log.debug("no fs.defaultFS from the driver's Hadoop configuration: %s", e)
        return None


def run(sc: Any, map_fun: Any, tf_args: Any, num_executors: int, num_ps: int, tensorboard: bool = False,
        input_mode: int = InputMode.TENSORFLOW, log_dir: str | None = None, driver_ps_nodes: bool = False,
        master_node: str | None = None, reservation_timeout: float = 600, queues: Any = None,
        eval_node: bool = False, release_port: bool = True, keras: int | None = None) -> TFCluster:
    """Starts one TF process per executor running `map_fun(tf_args, ctx)` and returns once all registered.

    Raises TimeoutError after reservation_timeout naming the registered and missing executors, or RuntimeError
    with the node's traceback if a start task fails first. `queues` is accepted for compatibility and unused.
    keras: 2 trains with tf-keras (Keras 2) as `tf.keras` on every node, 3 with TF's default Keras 3; None takes
    TF_USE_LEGACY_KERAS from the driver's environment or the Spark conf (spark.executorEnv.TF_USE_LEGACY_KERAS),
    so a TFoS-era script needs no change.
    """
    from pyspark import InheritableThread

    if driver_ps_nodes:
        raise NotImplementedError("driver_ps_nodes=True is not supported: run ps on executors")
    _check_run_args(num_executors, num_ps, master_node, reservation_timeout)
    if input_mode == InputMode.SPARK and str(sc.getConf().get("spark.speculation", "false")).lower() == "true":
        raise ValueError("spark.speculation=true: a speculative copy of a feeding task would feed its partition "
                         "to the TF nodes a second time (duplicate training data); set spark.speculation=false")
    keras = keras_compat.chosen_keras(keras, sc.getConf())
    slots = assign_roles(num_executors, num_ps, master_node, eval_node)
    cluster_id = uuid.uuid4().hex[:12]
    secret = secrets.token_bytes(32)
    server = ReservationServer(slots, secret, host=sc.getConf().get("spark.driver.host", None))
    template = NodeLaunch(map_fun=map_fun, tf_args=tf_args, executor_id=-1, job_name="", task_index=-1,
                          server_address=server.address, secret=secret, spark_feed=input_mode == InputMode.SPARK,
                          reservation_timeout=reservation_timeout, log_dir=log_dir, tensorboard=tensorboard,
                          release_port=release_port, keras=keras, default_fs=_driver_default_fs(sc),
                          working_dir=os.getcwd())
    group = f"tfoy-{cluster_id}-start"
    outcome: dict[str, BaseException] = {}

    def start() -> None:
        sc.setJobGroup(group, "tfoy: start TF nodes", interruptOnCancel=True)
        try:
            sc.parallelize(range(num_executors), num_executors).foreachPartition(
                partial(_start_node, template, cluster_id, slots))
        except BaseException as e:  # noqa: BLE001 - reported by await_reservations' abort hook
            outcome["error"] = e

    thread = InheritableThread(target=start, daemon=True)
    thread.start()
    log.info("TFCluster %s: waiting for %d nodes at %s:%d", cluster_id, num_executors, *server.address)
    try:
        spec = server.await_reservations(reservation_timeout,
                                         abort=lambda: str(outcome["error"]) if "error" in outcome else None)
    except BaseException:
        sc.cancelJobGroup(group)
        thread.join(30)
        server.close()
        raise
    thread.join(120)
    if "error" in outcome:
        server.close()
        raise RuntimeError(f"TFCluster.run: start job failed: {outcome['error']}")
    log.info("TFCluster %s: cluster spec %s", cluster_id, spec)
    return TFCluster(sc, server, input_mode, cluster_id, spec, secret)
