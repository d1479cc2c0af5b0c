"""The TFoS names tfnode exports, and that importing tfnode stays light (no pyspark, no TensorFlow)."""

from __future__ import annotations

import inspect
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
