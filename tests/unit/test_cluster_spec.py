from __future__ import annotations

import json

import pytest

from tfnode.cluster_spec import build_cluster_spec, tf_config, worker_shard
from tfnode.context import NodeContext

ADDRS = {
    ("worker", 1): "h:3",
    ("chief", 0): "h:1",
    ("worker", 0): "h:2",
    ("ps", 0): "h:0",
    ("evaluator", 0): "h:9",
    ("tensorboard", 0): "h:6006",
}


def test_spec_orders_roles_and_drops_tensorboard():
    spec = build_cluster_spec(ADDRS)
    assert list(spec) == ["ps", "chief", "evaluator", "worker"]
    assert spec["worker"] == ["h:2", "h:3"]
    assert "tensorboard" not in spec


def test_missing_task_is_named():
    with pytest.raises(ValueError, match=r"worker task\(s\) \[1\] missing"):
        build_cluster_spec({("worker", 0): "a:1", ("worker", 2): "a:2"})


def test_tf_config_and_shards():
    spec = build_cluster_spec(ADDRS)
    cfg = json.loads(tf_config(spec, "worker", 1))
    assert cfg["task"] == {"type": "worker", "index": 1} and cfg["cluster"]["chief"] == ["h:1"]
    assert worker_shard(spec, "chief", 0) == (3, 0)
    assert worker_shard(spec, "worker", 1) == (3, 2)
    assert worker_shard(spec, "ps", 0) == (1, 0)
    with pytest.raises(ValueError, match="worker:5 is not in the cluster spec"):
        tf_config(spec, "worker", 5)


def test_context_facts():
    spec = build_cluster_spec(ADDRS)
    ctx = NodeContext("worker", 1, spec, default_fs="hdfs://nn:8020")
    assert (ctx.num_workers, ctx.is_chief, ctx.num_shards, ctx.shard_index) == (3, False, 3, 2)
    assert ctx.defaultFS == "hdfs://nn:8020"
    assert ctx.absolute_path("/data") == "hdfs://nn:8020/data"
    assert NodeContext("chief", 0, spec).is_chief
    # no chief in the spec: worker 0 is the chief, as in MultiWorkerMirroredStrategy
    assert NodeContext("worker", 0, {"worker": ["a:1", "a:2"]}).is_chief
    with pytest.raises(RuntimeError, match="only TFCluster InputMode.SPARK"):
        ctx.get_data_feed()
