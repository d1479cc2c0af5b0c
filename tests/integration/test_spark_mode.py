"""TFoS-compatible Spark mode on real Spark: pyspark local-cluster and Spark on the embedded YARN.

Every test runs on both masters (module-scoped SparkContext, parametrized). HDFS is the real embedded cluster.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import spark_context

pytestmark = pytest.mark.integration

PYSPARK_HOME = Path(__import__("pyspark").__file__).parent


def _spark_conf(master: str):
    from pyspark import SparkConf

    conf = (SparkConf().setAppName(f"tfoy-test-spark-{master}").set("spark.task.maxFailures", "1")
            .set("spark.executor.memory", "1g").set("spark.ui.enabled", "false")
            .set("spark.executorEnv.HADOOP_CONF_DIR", os.environ.get("HADOOP_CONF_DIR", "")))
    if master == "yarn":
        conf = (conf.setMaster("yarn").set("spark.executor.instances", "2").set("spark.executor.cores", "1")
                .set("spark.yarn.jars", f"local:{PYSPARK_HOME}/jars/*")  # single host: no 460 MB upload per app
                .set("spark.yarn.am.memory", "512m").set("spark.executor.memoryOverhead", "384m")
                .set("spark.dynamicAllocation.enabled", "false")
                .set("spark.executorEnv.PYSPARK_PYTHON", sys.executable))
    else:
        conf = conf.setMaster("local-cluster[2,1,1024]")
    return conf


@pytest.fixture(scope="module", params=["local-cluster", "yarn"])
def sc(request, hadoop_conf):
    from pyspark import cloudpickle

    cloudpickle.register_pickle_by_value(sys.modules[__name__])  # executors cannot import the tests package
    os.environ["PYSPARK_PYTHON"] = sys.executable
    # pip-installed pyspark has no python/lib/pyspark.zip; executors import pyspark from this venv instead
    os.environ.setdefault("PYSPARK_ARCHIVES_PATH", f"local:{PYSPARK_HOME.parent}")
    context = spark_context(_spark_conf(request.param))
    context.setLogLevel("ERROR")
    deadline = time.monotonic() + 120
    while context._jsc.sc().getExecutorMemoryStatus().size() < 3 and time.monotonic() < deadline:
        time.sleep(0.5)  # both executors up, so node placement does not depend on start-up order
    yield context
    context.stop()


def _node_processes(cluster_id: str) -> list[str]:
    out = subprocess.run(["ps", "-ww", "-eo", "pid,args"], capture_output=True, text=True).stdout
    return [line for line in out.splitlines() if f".tfoy/{cluster_id}/" in line and "tfnode.spark.node" in line]


def _assert_no_node_left(cluster_id: str) -> None:
    deadline = time.monotonic() + 20
    while _node_processes(cluster_id) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert _node_processes(cluster_id) == []


# ---- map_funs (module level so cloudpickle ships them by value with their imports) --------------------------------
def train_fun(args, ctx):
    import numpy as np
    import tensorflow as tf

    from tfnode import TFNode

    feed = TFNode.DataFeed(ctx.mgr, train_mode=True)
    ds = feed.dataset(64).map(lambda x, y: (tf.reshape(tf.cast(x, tf.float32), (-1, 1)), tf.cast(y, tf.float32)))
    model = tf.keras.Sequential([tf.keras.Input((1,)), tf.keras.layers.Dense(1)])
    model.compile(tf.keras.optimizers.Adam(0.1), "mse")
    seen = 0
    for x, y in ds:
        model.train_on_batch(x, y)
        seen += int(x.shape[0])
    for _ in range(300):  # converge on what we saw so the inference check is meaningful
        xs = np.random.uniform(0, 1, (64, 1)).astype("float32")
        model.train_on_batch(xs, (2 * xs + 1).reshape(-1))
    Path(args["out"], f"seen-{ctx.executor_id}").write_text(str(seen))
    if ctx.is_chief:
        model.save(str(Path(args["out"], "model.keras")))


def infer_fun(args, ctx):
    import tensorflow as tf

    from tfnode import TFNode

    model = tf.keras.models.load_model(str(Path(args["out"], "model.keras")))
    feed = TFNode.DataFeed(ctx.mgr, train_mode=False)
    while not feed.should_stop():
        batch = feed.next_batch(64)
        if len(batch):
            xs = tf.constant([[float(r[0])] for r in batch])
            feed.batch_results([[float(r[0]), float(p[0])] for r, p in zip(batch, model(xs).numpy(), strict=True)])


def count_fun(args, ctx):
    from tfnode import TFNode

    feed = TFNode.DataFeed(ctx.mgr, train_mode=args.get("train", True))
    seen = 0
    while not feed.should_stop():
        batch = feed.next_batch(args["batch"])
        seen += len(batch)
        if not args.get("train", True) and len(batch):
            feed.batch_results([int(r[0]) * 3 for r in batch])
        if args.get("die_after") is not None and seen >= args["die_after"]:
            raise RuntimeError(f"tf-died-on-purpose after {seen}")
    Path(args["out"], f"seen-{ctx.executor_id}").write_text(str(seen))


def tfrecord_fun(args, ctx):
    """InputMode.TENSORFLOW as a user writes it: TF's own glob and TFRecordDataset on hdfs:// (hdfs_io's plugin)."""
    import tensorflow as tf

    from hdfs_io import fs

    files = sorted(tf.io.gfile.glob(fs.tf_path(f"{args['dir']}/*.tfrecord")))
    mine = files[ctx.shard_index::ctx.num_shards]
    count, total = 0, 0
    spec = {"image": tf.io.FixedLenFeature([784], tf.int64), "label": tf.io.FixedLenFeature([], tf.int64)}
    for ex in tf.data.TFRecordDataset(mine).map(lambda r: tf.io.parse_single_example(r, spec)):
        count += 1
        total += int(ex["label"]) + int(tf.reduce_sum(ex["image"]))
    fs.write_bytes(f"{args['out']}/{ctx.job_name}-{ctx.task_index}.json",
                   json.dumps({"files": len(mine), "count": count, "total": total}).encode())


def keras_fit_fun(args, ctx):
    """A TFoS-style Keras script: MultiWorkerMirroredStrategy, `model.fit` on the DataFeed, a ModelCheckpoint and
    the export on hdfs://, all with TF's own APIs. `tfos_era` uses TF-2.x-era idioms that only Keras 2 accepts."""
    import json

    import tensorflow as tf

    from tfnode import TFNode, compat

    strategy = tf.distribute.MultiWorkerMirroredStrategy()
    feed = TFNode.DataFeed(ctx.mgr, train_mode=True)
    ds = feed.dataset(32).map(lambda x, y: (tf.reshape(tf.cast(x, tf.float32), (-1, 1)), tf.cast(y, tf.float32)))
    options = tf.data.Options()
    compat.disable_auto_shard(options)  # each node trains on what its feed brings
    ds = ds.with_options(options)
    with strategy.scope():
        model = tf.keras.Sequential([tf.keras.Input((1,)), tf.keras.layers.Dense(1)])
        model.compile(tf.keras.optimizers.Adam(0.1), "mse")
    if args["tfos_era"]:
        checkpoint = tf.keras.callbacks.ModelCheckpoint(filepath=args["model_dir"] + "/weights-{epoch:04d}",
                                                        save_weights_only=True)
        steps = float(args["steps"])
    else:
        checkpoint = tf.keras.callbacks.ModelCheckpoint(args["model_dir"] + "/weights-{epoch:04d}.weights.h5",
                                                        save_weights_only=True)
        steps = int(args["steps"])
    history = model.fit(ds, epochs=2, steps_per_epoch=steps, callbacks=[checkpoint], verbose=0)
    feed.terminate()
    compat.export_saved_model(model, args["export_dir"], ctx.is_chief)
    with tf.io.gfile.GFile(f"{args['out']}/{ctx.job_name}-{ctx.task_index}.json", "w") as f:
        f.write(json.dumps({"keras": tf.keras.Model.__module__.split(".")[0],  # tf_keras (Keras 2) or keras
                            "loss": history.history["loss"]}))


def picky_infer_fun(args, ctx):
    from tfnode import TFNode

    feed = TFNode.DataFeed(ctx.mgr, train_mode=False)
    while not feed.should_stop():
        batch = feed.next_batch(16)
        for r in batch:
            if r[0] < 0:
                raise ValueError(f"bad-record-{r[0]}")
        if len(batch):
            feed.batch_results([r[0] for r in batch])


def raise_fun(args, ctx):
    raise ValueError("boom-from-map-fun")


# ---- tests ---------------------------------------------------------------------------------------------------------
def test_train_then_inference_in_spark_mode(sc, tmp_path):
    from tfnode import TFCluster

    # uneven partitions: 700 + 150 + 1 + 333 records
    rdd = sc.union([sc.parallelize([(float(i) / 1200, 2 * float(i) / 1200 + 1) for i in range(a, b)], 1)
                    for a, b in ((0, 700), (700, 850), (850, 851), (851, 1184))])
    cluster = TFCluster.run(sc, train_fun, {"out": str(tmp_path)}, 2, 0, input_mode=TFCluster.InputMode.SPARK,
                            reservation_timeout=120, master_node="chief")
    cluster.train(rdd, num_epochs=2, feed_timeout=120)
    cluster.shutdown(timeout=300)
    _assert_no_node_left(cluster.cluster_id)
    seen = sum(int(p.read_text()) for p in tmp_path.glob("seen-*"))
    assert seen == 2 * 1184

    # 1001 records over 3 partitions, batch 64: no size divides by the batch size
    infer_rdd = sc.parallelize([(i / 1001,) for i in range(1001)], 3)
    cluster = TFCluster.run(sc, infer_fun, {"out": str(tmp_path)}, 2, 0, input_mode=TFCluster.InputMode.SPARK,
                            reservation_timeout=120)
    results = cluster.inference(infer_rdd).collect()
    from pyspark.sql import SparkSession

    infer_df = SparkSession.builder.getOrCreate().createDataFrame(infer_rdd, "x double").repartition(2)
    df_results = cluster.inference(infer_df).collect()  # the same records as a DataFrame, fed over Arrow
    cluster.shutdown(timeout=120)
    _assert_no_node_left(cluster.cluster_id)
    assert len(results) == 1001
    assert sorted(x for x, _ in results) == sorted(i / 1001 for i in range(1001))
    assert all(abs(p - (2 * x + 1)) < 0.1 for x, p in results)
    assert sorted(map(tuple, df_results)) == sorted(map(tuple, results))


@pytest.mark.parametrize("keras", [3, 2])
def test_keras_fit_on_the_data_feed_with_two_nodes_exports_to_hdfs(sc, hdfs_tmp, keras, monkeypatch, caplog):
    import logging

    import tensorflow as tf

    caplog.set_level(logging.INFO, logger="tfnode.spark.reservation")

    from hdfs_io.paths import absolute_uri
    from tfnode import TFCluster

    base = absolute_uri(hdfs_tmp)
    args = {"model_dir": f"{base}/model", "export_dir": f"{base}/export", "out": f"{base}/out", "steps": 5,
            "tfos_era": keras == 2}
    if keras == 2:  # as a TFoS user would: the driver's environment, no code change
        monkeypatch.setenv("TF_USE_LEGACY_KERAS", "1")
    rdd = sc.parallelize([(float(i) / 1280, 2 * float(i) / 1280 + 1) for i in range(1280)], 2)
    cluster = TFCluster.run(sc, keras_fit_fun, args, 2, 0, input_mode=TFCluster.InputMode.SPARK,
                            reservation_timeout=120, master_node="chief")
    monkeypatch.delenv("TF_USE_LEGACY_KERAS", raising=False)
    cluster.train(rdd, num_epochs=1, feed_timeout=120)
    cluster.shutdown(timeout=300)
    _assert_no_node_left(cluster.cluster_id)
    reports = [json.loads(tf.io.gfile.GFile(f"{base}/out/{name}").read())
               for name in sorted(tf.io.gfile.listdir(f"{base}/out"))]
    assert len(reports) == 2
    assert all(r["keras"] == {2: "tf_keras", 3: "keras"}[keras] for r in reports), reports
    assert reports[0]["loss"] == reports[1]["loss"]  # one model, trained in step on both nodes
    assert tf.io.gfile.exists(f"{base}/export/saved_model.pb")  # where TFoS's compat puts it: export_dir itself
    suffix = ".index" if keras == 2 else ".weights.h5"  # Keras 2 saves TF checkpoints when the name says nothing
    assert f"weights-0002{suffix}" in tf.io.gfile.listdir(f"{base}/model")
    served = tf.saved_model.load(f"{base}/export")
    assert "serving_default" in served.signatures
    # every node's progress reached the driver's log (the callback tfoy adds to model.fit, Keras 3 and 2)
    for node in ("chief:0", "worker:0"):
        assert re.search(rf"\({node}\): \w+ epoch 2/2 step \d+ loss", caplog.text), caplog.text[-3000:]


def test_tensorflow_mode_reads_tfrecords_from_hdfs(sc, hdfs, hdfs_tmp, tmp_path):
    import tensorflow as tf

    from tfnode import TFCluster

    expected_total = 0
    for part in range(3):
        local = tmp_path / f"part-{part}.tfrecord"
        with tf.io.TFRecordWriter(str(local)) as writer:
            for i in range(100):
                image, label = [(i + part) % 7] * 784, i % 10
                expected_total += sum(image) + label
                ex = tf.train.Example(features=tf.train.Features(feature={
                    "image": tf.train.Feature(int64_list=tf.train.Int64List(value=image)),
                    "label": tf.train.Feature(int64_list=tf.train.Int64List(value=[label]))}))
                writer.write(ex.SerializeToString())
        with hdfs.create(f"{hdfs_tmp}/data/part-{part}.tfrecord") as out:
            out.write(local.read_bytes())
    hdfs.mkdirs(f"{hdfs_tmp}/out")
    cluster = TFCluster.run(sc, tfrecord_fun, {"dir": f"{hdfs_tmp}/data", "out": f"{hdfs_tmp}/out"}, 2, 0,
                            input_mode=TFCluster.InputMode.TENSORFLOW, reservation_timeout=120)
    cluster.shutdown(timeout=300)
    _assert_no_node_left(cluster.cluster_id)
    reports = []
    for status in hdfs.list_status(f"{hdfs_tmp}/out"):
        with hdfs.read(status.path) as f:
            reports.append(json.loads(f.read()))
    assert sorted(r["files"] for r in reports) == [1, 2]
    assert sum(r["count"] for r in reports) == 300
    assert sum(r["total"] for r in reports) == expected_total


def test_more_executors_than_exist_times_out_naming_nodes(sc):
    from tfnode import TFCluster

    started = time.monotonic()
    with pytest.raises(TimeoutError) as info:
        TFCluster.run(sc, raise_fun, {}, 3, 0, input_mode=TFCluster.InputMode.SPARK, reservation_timeout=10)
    message = str(info.value)
    assert time.monotonic() - started < 60
    assert "2 of 3 nodes registered" in message
    assert "missing: executor 2 (worker:2)" in message


def test_map_fun_raising_reaches_the_driver_with_its_traceback(sc):
    from tfnode import TFCluster

    cluster = TFCluster.run(sc, raise_fun, {}, 2, 0, input_mode=TFCluster.InputMode.TENSORFLOW,
                            reservation_timeout=120)
    with pytest.raises(RuntimeError) as info:
        cluster.shutdown(timeout=120)
    assert "boom-from-map-fun" in str(info.value)
    assert "Traceback" in str(info.value) and "raise_fun" in str(info.value)
    _assert_no_node_left(cluster.cluster_id)


def test_records_of_wrong_shape_name_the_partition(sc, tmp_path):
    from tfnode import TFCluster

    good = [([1] * 784, 1)] * 50
    bad = [([1] * 784, 1)] * 10 + [([1] * 783, 1)] + [([1] * 784, 1)] * 10
    rdd = sc.union([sc.parallelize(good, 1), sc.parallelize(bad, 1)])
    cluster = TFCluster.run(sc, count_fun, {"out": str(tmp_path), "batch": 16}, 2, 0,
                            input_mode=TFCluster.InputMode.SPARK, reservation_timeout=120)
    try:
        with pytest.raises(Exception, match=r"partition 1: field 0 of record 10 has shape \(783,\)"):
            cluster.train(rdd, feed_timeout=60)
    finally:
        cluster.shutdown(timeout=60)
    _assert_no_node_left(cluster.cluster_id)


def test_dying_tf_process_fails_its_feeding_task_at_once(sc, tmp_path):
    from tfnode import TFCluster

    rdd = sc.parallelize([([i] * 784, i) for i in range(6000)], 4)
    cluster = TFCluster.run(sc, count_fun, {"out": str(tmp_path), "batch": 32, "die_after": 64}, 2, 0,
                            input_mode=TFCluster.InputMode.SPARK, reservation_timeout=120)
    started = time.monotonic()
    with pytest.raises(RuntimeError) as info:
        cluster.train(rdd, feed_timeout=600)
    assert time.monotonic() - started < 60  # not feed_timeout
    assert "tf-died-on-purpose" in str(info.value) and "Traceback" in str(info.value)
    with pytest.raises(RuntimeError, match="tf-died-on-purpose"):
        cluster.shutdown(timeout=30)
    _assert_no_node_left(cluster.cluster_id)


def test_tfparallel_runs_one_independent_node_per_executor(sc):
    from tfnode import TFParallel

    results = TFParallel.run(sc, lambda args, ctx: (ctx.task_index, ctx.num_workers, args["x"]), {"x": 7}, 2)
    assert sorted(results) == [(0, 2, 7), (1, 2, 7)]


def sleep_fun(args, ctx):
    time.sleep(args["seconds"])


def test_a_node_whose_executor_dies_ends_too(sc):
    """Nodes run in a session of their own (they outlive the start task), so before they escaped the kill of
    their executor: an executor killed with -9 left its TF node running until the driver ended."""
    from tfnode import TFCluster

    cluster = TFCluster.run(sc, sleep_fun, {"seconds": 600}, 2, 0, input_mode=TFCluster.InputMode.TENSORFLOW,
                            reservation_timeout=120)
    try:
        deadline = time.monotonic() + 60
        while len(_node_processes(cluster.cluster_id)) < 2 and time.monotonic() < deadline:
            time.sleep(0.5)
        pid, args = _node_processes(cluster.cluster_id)[0].split(None, 1)
        launch = Path(args.split()[-1])
        info = json.loads((launch.parent / "node.json").read_text())
        assert info["pid"] == int(pid) and info["executor_pid"], info
        assert Path(f"/proc/{info['executor_pid']}/comm").read_text().strip() == "java"
        os.kill(info["executor_pid"], signal.SIGKILL)
        deadline = time.monotonic() + 30
        while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
            time.sleep(0.5)
        assert not Path(f"/proc/{pid}").exists(), f"node {pid} outlived its executor {info['executor_pid']}"
    finally:
        with pytest.raises(RuntimeError):
            cluster.shutdown(timeout=5)
    _assert_no_node_left(cluster.cluster_id)


def test_a_bad_record_in_inference_raises_its_error_not_a_feed_timeout(sc):
    """Before, the node's error was lost and the inference task waited out feed_timeout for results."""
    from tfnode import TFCluster

    rdd = sc.parallelize([[i] for i in range(200)] + [[-7]] + [[i] for i in range(200)], 2)
    cluster = TFCluster.run(sc, picky_infer_fun, {}, 2, 0, input_mode=TFCluster.InputMode.SPARK,
                            reservation_timeout=120)
    started = time.monotonic()
    try:
        with pytest.raises(Exception, match="bad-record--7"):
            cluster.inference(rdd, feed_timeout=300).collect()
        assert time.monotonic() - started < 60  # not feed_timeout
    finally:
        with pytest.raises(RuntimeError, match="bad-record--7"):
            cluster.shutdown(timeout=30)
    _assert_no_node_left(cluster.cluster_id)


# ---- dfutil: DataFrames <-> TFRecords on HDFS ------------------------------------------------------------------------
def test_dfutil_round_trip_keeps_rows_and_types(sc, hdfs_tmp):
    from pyspark.sql import SparkSession
    from pyspark.sql.types import ArrayType, BinaryType, DoubleType, LongType, StringType

    from hdfs_io import fs
    from hdfs_io.paths import absolute_uri
    from tfnode import dfutil

    spark = SparkSession.builder.getOrCreate()
    rows = [(i, i / 4, f"name-{i}", [f"t{i}", "x"], [float(i), 0.5, 2.0], bytes([i % 256, 0, 255]))
            for i in range(40)]
    df = spark.createDataFrame(rows, "id long, score double, name string, tags array<string>, vec array<float>, "
                                     "raw binary").repartition(3)
    out = absolute_uri(f"{hdfs_tmp}/tfr")
    assert dfutil.saveAsTFRecords(df, out) == 40
    assert fs.exists(f"{out}/_SUCCESS") and len(dfutil.tfrecord_files(out)) == 3
    with pytest.raises(FileExistsError, match="already exists"):
        dfutil.saveAsTFRecords(df, out)
    loaded = dfutil.loadTFRecords(sc, out, binary_features=["raw"])
    assert dfutil.isLoadedDF(loaded) and not dfutil.isLoadedDF(df)
    types = {f.name: f.dataType for f in loaded.schema.fields}
    # TFoS's types: a float_list is double (tf.train.Example does not say which float it was)
    assert types == {"id": LongType(), "score": DoubleType(), "name": StringType(), "tags": ArrayType(StringType()),
                     "vec": ArrayType(DoubleType()), "raw": BinaryType()}
    got = sorted(loaded.collect(), key=lambda r: r.id)
    assert [(r.id, r.name, r.tags, r.vec, bytes(r.raw)) for r in got] == [
        (i, n, t, v, b) for i, _, n, t, v, b in rows]
    assert [r.score for r in got] == pytest.approx([s for _, s, *_ in rows])
    # TFoS's mapPartitions helpers keep their shapes: (bytearray, None) pairs out, and such pairs read back
    some = df.limit(2).collect()
    pairs = list(dfutil.toTFExample(df.dtypes)(some))
    assert all(isinstance(k, bytearray) and v is None for k, v in pairs)
    assert [r.name for r in dfutil.fromTFExample(pairs, ["raw"])] == [r.name for r in some]


def test_dfutil_names_the_file_and_offset_of_a_corrupt_record(sc, hdfs_tmp):
    from hdfs_io import fs, records
    from hdfs_io.paths import absolute_uri
    from tfnode import dfutil

    out = absolute_uri(f"{hdfs_tmp}/bad")
    examples = [records.make_example({"x": i, "y": [1.0, 2.0]}).SerializeToString() for i in range(10)]
    records.write_tfrecords(f"{out}/part-r-00000", examples)
    data = bytearray(fs.read_bytes(f"{out}/part-r-00000"))
    offset = sum(12 + len(e) + 4 for e in examples[:4])  # the fifth record's header
    data[offset + 12 + 3] ^= 0xFF  # a byte of its data
    fs.write_bytes(f"{out}/part-r-00000", bytes(data))
    with pytest.raises(Exception, match=rf"part-r-00000: corrupt TFRecord at byte offset {offset}: data checksum"):
        dfutil.loadTFRecords(sc, out).collect()


def test_dfutil_refuses_what_would_lose_data_naming_the_record_and_feature(sc, hdfs_tmp):
    """The defects: a later record's list cut to its first value, or its extra feature dropped, without a word;
    a duplicate column name lost one column's values; bad bytes or a typo in binary_features failed unnamed."""
    from pyspark.sql import SparkSession

    from hdfs_io import fs, records
    from hdfs_io.paths import absolute_uri
    from tfnode import dfutil

    spark = SparkSession.builder.getOrCreate()
    base = absolute_uri(hdfs_tmp)
    with pytest.raises(ValueError, match="column 'a' appears 2 times; a tf.train.Example has one feature of each"):
        dfutil.saveAsTFRecords(spark.createDataFrame([(1, 2)], "a int, b int").toDF("a", "a"), f"{base}/dup")
    with pytest.raises(Exception, match=r"column 'a': a null element in \[1, None\]"):
        dfutil.saveAsTFRecords(spark.createDataFrame([([1, None],)], "a array<int>"), f"{base}/null")
    assert not fs.exists(f"{base}/null")
    second = len(records.make_example({"a": 1}).SerializeToString()) + 16  # the second record's byte offset
    cases = {
        "longer": ([{"a": 1}, {"a": [1, 2, 3]}], f"record at byte {second}: feature 'a' has 3 values where the "
                                                 "schema has one"),
        "extra": ([{"a": 1}, {"a": 1, "extra": b"hello"}], "feature 'extra' is not in the schema inferred from the "
                                                           "first record (a)"),
        "type": ([{"a": 1}, {"a": 2.5}], "feature 'a' is a float_list, the schema (from the first record) has bigint"),
        "bytes": ([{"a": b"\xff\xfe"}], "record at byte 0: feature 'a' is not UTF-8 text; name it in binary_feat"),
    }
    for name, (examples, message) in cases.items():
        records.write_tfrecords(f"{base}/{name}/part-r-00000", [records.make_example(e) for e in examples])
        with pytest.raises(Exception, match=re.escape(message)):
            dfutil.loadTFRecords(sc, f"{base}/{name}").collect()
    assert bytes(dfutil.loadTFRecords(sc, f"{base}/bytes", binary_features=["a"]).first().a) == b"\xff\xfe"
    from pyspark.sql.types import ArrayType, LongType, StructField, StructType

    given = StructType([StructField("a", ArrayType(LongType()))])  # what the message advises for "longer"
    assert sorted(r.a for r in dfutil.loadTFRecords(sc, f"{base}/longer", schema=given).collect()) == [[1], [1, 2, 3]]
    with pytest.raises(ValueError, match=r"binary_features: 'image' is not a feature of the schema \(a\)"):
        dfutil.loadTFRecords(sc, f"{base}/bytes", binary_features=["image"])
    records.write_tfrecords(f"{base}/junk/part-r-00000", [b"\xff\xff\xff garbage"])
    with pytest.raises(ValueError, match="part-r-00000: record at byte 0: not a tf.train.Example"):
        dfutil.loadTFRecords(sc, f"{base}/junk")
    with pytest.raises(NotADirectoryError, match="part-r-00000: a file; give the folder of part files it is in"):
        dfutil.loadTFRecords(sc, f"{base}/junk/part-r-00000")


# ---- DataFrames fed over Arrow -----------------------------------------------------------------------------------
def mapped_sum_fun(args, ctx):
    from tfnode import TFNode

    if ctx.mgr is None:  # the ps node: no feed; its executor's partitions go to the worker
        return
    feed = TFNode.DataFeed(ctx.mgr, train_mode=True, input_mapping={"image": "x", "label": "y"})
    seen, labels, shape = 0, 0, None
    while not feed.should_stop():
        batch = feed.next_batch(100)
        if len(batch["y"]):
            seen += len(batch["y"])
            labels += int(batch["y"].sum())
            shape = list(batch["x"].shape[1:])
    Path(args["out"], f"df-{ctx.executor_id}").write_text(json.dumps([seen, labels, shape]))


def test_a_dataframe_is_fed_over_arrow_also_from_the_ps_executor(sc, tmp_path):
    """ps:0 + worker:0 on two executors: the partitions Spark runs on the ps executor are sent to the worker."""
    from pyspark.sql import SparkSession

    from tfnode import TFCluster

    spark = SparkSession.builder.getOrCreate()
    df = spark.createDataFrame([([i % 256] * 784, i % 10, f"n{i}") for i in range(3000)],
                               "image array<long>, label long, name string").repartition(4)
    props = spark.createDataFrame([({"a": i}, i) for i in range(50)], "props map<string,long>, label long")
    cluster = TFCluster.run(sc, mapped_sum_fun, {"out": str(tmp_path)}, 2, 1, input_mode=TFCluster.InputMode.SPARK,
                            reservation_timeout=120)
    try:
        with pytest.raises(ValueError, match=r"no column 'pixels' \(its columns: image, label, name\)"):
            cluster.train(df, input_mapping={"pixels": "x", "label": "y"})
        with pytest.raises(ValueError, match=r"column 'props' is map<string,bigint>, which cannot be fed"):
            cluster.train(props)
        cluster.train(df, num_epochs=2, feed_timeout=120, input_mapping={"image": "x", "label": "y"})
    finally:
        cluster.shutdown(timeout=120)
    got = [json.loads(p.read_text()) for p in tmp_path.glob("df-*")]
    assert len(got) == 1 and got[0][0] == 6000 and got[0][1] == 2 * sum(i % 10 for i in range(3000))
    assert got[0][2] == [784]
    _assert_no_node_left(cluster.cluster_id)


# ---- the Spark ML pipeline: TFEstimator / TFModel ---------------------------------------------------------------
def pipeline_train_fun(args, ctx):
    """A TFoS pipeline train function: args are tf_args merged with the estimator's Params."""
    import tensorflow as tf

    from tfnode import TFNode, compat

    strategy = tf.distribute.MultiWorkerMirroredStrategy()
    feed = TFNode.DataFeed(ctx.mgr, train_mode=True)
    ds = feed.dataset(args.batch_size).map(lambda x, y: (tf.cast(x, tf.float32), y))  # columns: image, label
    options = tf.data.Options()
    compat.disable_auto_shard(options)
    with strategy.scope():
        model = tf.keras.Sequential([tf.keras.Input((784,), name="image"), tf.keras.layers.Rescaling(1 / 255),
                                     tf.keras.layers.Dense(128, activation="relu"), tf.keras.layers.Dense(10)])
        model.compile("adam", tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(ds.with_options(options), epochs=args.epochs, steps_per_epoch=args.steps, verbose=0)
    feed.terminate()
    compat.export_saved_model(model, args.export_dir, ctx.is_chief)


def _mnist_df(spark, split: str, n: int):
    import pyarrow as pa

    from examples.mnist.idx import load_split

    images, labels = load_split(split)
    images, labels = images[:n].astype("int64"), labels[:n].astype("int64")
    table = pa.table({"image": pa.FixedSizeListArray.from_arrays(images.reshape(-1), 784).cast(
        pa.list_(pa.int64())), "label": labels})
    return spark.createDataFrame(table)


def test_tfestimator_fit_then_tfmodel_transform_on_fashion_mnist(sc, hdfs_tmp):
    import numpy as np
    from pyspark.ml import Pipeline, PipelineModel
    from pyspark.sql import SparkSession

    from hdfs_io.paths import absolute_uri
    from tfnode.spark.pipeline import TFEstimator, TFModel

    spark = SparkSession.builder.getOrCreate()
    base = absolute_uri(hdfs_tmp)
    train = _mnist_df(spark, "train", 6000).repartition(4)
    estimator = (TFEstimator(pipeline_train_fun, {"note": "tf_args reach train_fn"})
                 .setInputMapping({"image": "image", "label": "label"}).setClusterSize(2).setEpochs(2)
                 .setBatchSize(100).setSteps(15).setExportDir(f"{base}/export").setModelDir(f"{base}/model")
                 .setGraceSecs(5))
    fitted = Pipeline(stages=[estimator]).fit(train)
    model = fitted.stages[0]
    assert isinstance(model, TFModel) and model.getExportDir() == f"{base}/export" and model.getBatchSize() == 100
    model.setInputMapping({"image": "image"}).setOutputMapping({"output_0": "logits"})
    fitted.write().save(f"{base}/pipeline")  # TFModel saves with its params and tf_args; the SavedModel stays put
    loaded = PipelineModel.load(f"{base}/pipeline")
    assert loaded.stages[0].args.note == "tf_args reach train_fn"

    test = _mnist_df(spark, "test", 2000).repartition(3)
    rows = loaded.transform(test).select("label", "logits").collect()
    assert len(rows) == 2000 and len(rows[0]["logits"]) == 10
    accuracy = float(np.mean([int(np.argmax(r["logits"])) == r["label"] for r in rows]))
    print(f"TFEstimator.fit + TFModel.transform on Fashion-MNIST: accuracy {accuracy:.3f} on 2000 test images")
    assert accuracy > 0.6

    # bad input, named on the driver before any Spark job
    with pytest.raises(ValueError, match=r"has no input 'pixels'; its inputs: image float32 \(None, 784\)"):
        TFModel().setExportDir(f"{base}/export").setInputMapping({"image": "pixels"}).setOutputMapping(
            {"output_0": "p"}).transform(test)
    named = spark.createDataFrame([("a", 1)], "image string, label long")
    with pytest.raises(ValueError, match=r"column 'image' is string, which cannot feed the signature's input image"):
        model.transform(named)
    with pytest.raises(ValueError, match=r"no column 'image' \(its columns: label\)"):
        model.transform(test.select("label"))
    with pytest.raises(FileNotFoundError, match=r"holds no SavedModel"):
        TFModel().setExportDir(f"{base}/model").setInputMapping({"image": "image"}).setOutputMapping(
            {"output_0": "p"}).transform(test)
    odd = TFModel().setExportDir(f"{base}/export").setInputMapping({"image": "image"}).setOutputMapping(
        {"output_0": "p`x"})
    assert "p`x" in odd.transform(test).columns  # the output schema's DDL quotes it (was a ParseException)
