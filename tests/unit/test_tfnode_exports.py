"""The TFoS names tfnode exports, and that importing tfnode stays light (no pyspark, no TensorFlow)."""

from __future__ import annotations

import inspect
import re
import subprocess
import sys


def test_import_tfnode_does_not_import_pyspark_or_tensorflow():
    code = ("import sys, tfnode; feed = tfnode.TFNode.DataFeed; "
            "assert 'pyspark' not in sys.modules and 'tensorflow' not in sys.modules, sorted(sys.modules)")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_tfos_names_and_signatures():
    from tfnode import TFCluster, TFNode, TFParallel, compat

    run = inspect.signature(TFCluster.run)
    assert list(run.parameters)[:5] == ["sc", "map_fun", "tf_args", "num_executors", "num_ps"]
    assert run.parameters["input_mode"].default == TFCluster.InputMode.TENSORFLOW
    assert run.parameters["reservation_timeout"].default == 600
    assert {"tensorboard", "log_dir", "master_node", "eval_node", "release_port"} <= set(run.parameters)
    assert TFCluster.InputMode.SPARK != TFCluster.InputMode.TENSORFLOW
    assert list(inspect.signature(TFCluster.TFCluster.train).parameters)[1:4] == ["dataRDD", "num_epochs",
                                                                                   "feed_timeout"]
    assert list(inspect.signature(TFCluster.TFCluster.shutdown).parameters)[1:4] == ["ssc", "grace_secs", "timeout"]
    for method in ("next_batch", "should_stop", "batch_results", "terminate", "dataset"):
        assert callable(getattr(TFNode.DataFeed, method))
    assert list(inspect.signature(TFParallel.run).parameters)[:4] == ["sc", "map_fn", "tf_args", "num_executors"]
    assert callable(compat.export_saved_model)


def test_hdfs_path_goes_to_the_default_fs():
    from tfnode import TFNode
    from tfnode.context import NodeContext

    ctx = NodeContext("worker", 0, {"worker": ["h:1"]}, default_fs="hdfs://nn:8020")
    assert TFNode.hdfs_path(ctx, "/data/x") == "hdfs://nn:8020/data/x"
    assert TFNode.hdfs_path(ctx, "hdfs://other:9000/y") == "hdfs://other:9000/y"


def test_speculation_is_refused_for_a_spark_fed_cluster():
    """A speculative copy of a feeding task would feed its partition twice: refused before any node starts."""
    import pytest

    from tfnode import TFCluster

    class Conf(dict):
        def get(self, key, default=None):
            return super().get(key, default)

    class FakeContext:
        def getConf(self):
            return Conf({"spark.speculation": "true"})

        def __getattr__(self, name):
            raise AssertionError(f"sc.{name} used: the check must come first")

    with pytest.raises(ValueError, match="spark.speculation=true"):
        TFCluster.run(FakeContext(), lambda args, ctx: None, {}, 2, 0, input_mode=TFCluster.InputMode.SPARK)


def test_tfos_module_paths_import_as_with_tensorflowonspark():
    """`s/tensorflowonspark/tfnode/` on a TFoS script's imports: the module paths exist and are the same objects."""
    import tfnode
    import tfnode.spark.cluster
    import tfnode.spark.dfutil
    import tfnode.spark.pipeline
    from tfnode.pipeline import TFEstimator, TFModel
    from tfnode.TFCluster import InputMode
    from tfnode.TFNode import DataFeed, hdfs_path, release_port

    assert tfnode.TFCluster is tfnode.spark.cluster and InputMode.SPARK == 1
    assert tfnode.pipeline is tfnode.spark.pipeline and TFEstimator.__module__ == "tfnode.spark.pipeline"
    assert tfnode.dfutil is tfnode.spark.dfutil and callable(TFModel)
    assert tfnode.TFNode.DataFeed is DataFeed and callable(hdfs_path) and callable(release_port)


def test_context_has_tfos_names_and_file_paths_follow_the_working_dir():
    from tfnode import TFNode
    from tfnode.context import NodeContext

    ctx = NodeContext("worker", 1, {"worker": ["h:1", "h:2"]}, executor_id=3, default_fs="file:///",
                      working_dir="/home/me/job")
    assert ctx.worker_num == 3  # TFoS's older name for executor_id
    assert TFNode.hdfs_path(ctx, "mnist_model") == "file:///home/me/job/mnist_model"  # the driver's folder
    assert TFNode.hdfs_path(ctx, "/abs/x") == "file:///abs/x"


def test_shutdown_without_timeout_waits_for_the_nodes_not_a_deadline():
    """shutdown(timeout=-1) is TFoS's "no timeout": chief and workers get as long as they run."""
    from tfnode.spark.cluster import TFCluster

    calls = []

    class Server:
        def broadcast(self, msg):
            calls.append(msg["op"])

        def wait_finished(self, which, timeout):
            calls.append(timeout)
            return []

        def vanished(self):
            return []

        def failures(self):
            return []

        def close(self):
            calls.append("close")

    TFCluster(None, Server(), 0, "c", {}, b"k").shutdown(timeout=-1)
    assert calls[0] == float("inf") and calls[-1] == "close"


def test_run_names_a_bad_argument_before_any_spark_job():
    import pytest

    from tfnode import TFCluster

    class NoSpark:
        def __getattr__(self, name):
            raise AssertionError(f"sc.{name} used: the checks must come first")

    for kwargs, message in [({"num_executors": "4"}, "num_executors must be a whole number >= 1, got '4'"),
                            ({"num_ps": -1}, "num_ps must be a whole number >= 0, got -1"),
                            ({"master_node": "Chief"}, "master_node must be None, 'chief' or 'master', got 'Chief'"),
                            ({"reservation_timeout": float("nan")}, "reservation_timeout must be a positive"),
                            ({"reservation_timeout": None}, "reservation_timeout must be a positive")]:
        args = {"num_executors": 2, "num_ps": 0, **kwargs}
        with pytest.raises(ValueError, match=re.escape(message)):
            TFCluster.run(NoSpark(), lambda a, c: None, {}, args.pop("num_executors"), args.pop("num_ps"), **args)
