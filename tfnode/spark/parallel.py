"""TFoS's TFParallel: independent single-node TensorFlow per executor (e.g. batch inference), no cluster spec.

Runs as a Spark barrier stage so that all `num_executors` tasks start together or the job fails at once (no
waiting for a reservation that can never complete).
"""

from __future__ import annotations

from functools import partial
from typing import Any

from tfnode import keras_compat
from tfnode.context import NodeContext
from tfnode.prepare import prepare_node


def _run_one(map_fn: Any, tf_args: Any, num_executors: int, use_barrier: bool, keras: int | None,
             iterator: Any) -> list[Any]:
    from pyspark import BarrierTaskContext, TaskContext

    prepare_node(keras)
    if use_barrier:
        task = BarrierTaskContext.get()
        hosts = [info.address for info in task.getTaskInfos()]
    else:
        task = TaskContext.get()
        hosts = ["localhost:0"] * num_executors
    index = task.partitionId()
    ctx = NodeContext(job_name="worker", task_index=index, cluster_spec={"worker": hosts}, executor_id=index)
    return [map_fn(tf_args, ctx)]


def run(sc: Any, map_fn: Any, tf_args: Any, num_executors: int, use_barrier: bool = True,
        keras: int | None = None) -> list[Any]:
    """Runs `map_fn(tf_args, ctx)` once on each of `num_executors` executors; returns their return values.
    keras: as for TFCluster.run (it takes effect where the executor has not loaded TF's Keras yet)."""
    keras = keras_compat.chosen_keras(keras, sc.getConf())
    rdd = sc.parallelize(range(num_executors), num_executors)
    fn = partial(_run_one, map_fn, tf_args, num_executors, use_barrier, keras)
    return (rdd.barrier() if use_barrier else rdd).mapPartitions(fn).collect()
