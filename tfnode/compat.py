"""TFoS's `compat` helpers for TF 2.x code written against tensorflowonspark."""

from __future__ import annotations

from typing import Any


def export_saved_model(model: Any, export_dir: str, is_chief: bool = False) -> None:
    """Saves a Keras (3 or 2) or TF model as a SavedModel at export_dir itself, where TFoS's `model.save(export_dir)`
    put it (so `tf.saved_model.load(export_dir)` and TFModel find it), replacing what was there. Published whole:
    written beside it and renamed into place, so a reader never finds half a model. Every worker runs the same
    save, because under MultiWorkerMirroredStrategy saving runs collectives that must match; non-chief workers
    write to a throw-away folder (as TFoS does). For TF Serving's versioned `<base>/<n>` layout use
    `hdfs_io.export_saved_model`."""
    from hdfs_io import fs
    from hdfs_io.export import save_on_worker, save_saved_model
    from hdfs_io.paths import absolute_uri
    from hdfs_io.publish import publish

    if not is_chief:
        save_on_worker(model)
        return
    target = absolute_uri(export_dir)
    parent = target.rstrip("/").rsplit("/", 1)[0]
    fs.makedirs(parent)
    with publish(target, replace=True) as p:
        save_saved_model(model, fs.tf_path(p.tmp))


def disable_auto_shard(options: Any) -> None:
    """Turns off tf.data auto-sharding on `options` (TFoS's compat.disable_auto_shard)."""
    import tensorflow as tf

    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.OFF


def is_gpu_available() -> bool:
    import tensorflow as tf

    return bool(tf.config.list_physical_devices("GPU"))
