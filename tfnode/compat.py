"""TFoS's `compat` helpers for TF 2.x code written against tensorflowonspark."""

from __future__ import annotations

from typing import Any


def export_saved_model(model: Any, export_dir: str, is_chief: bool = False) -> None:
    """Exports a Keras (3 or 2) or TF model as a SavedModel version under export_dir
    (`hdfs_io.export.export_saved_model`: `<export_dir>/<n>`, published whole). Every worker runs the same save,
    because under MultiWorkerMirroredStrategy saving runs collectives that must match; non-chief workers write
    to a throw-away folder (as TFoS does)."""
    from hdfs_io.export import export_saved_model as export

    export(model, export_dir, is_chief=is_chief)


def disable_auto_shard(options: Any) -> None:
    """Turns off tf.data auto-sharding on `options` (TFoS's compat.disable_auto_shard)."""
    import tensorflow as tf

    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.OFF


def is_gpu_available() -> bool:
    import tensorflow as tf

    return bool(tf.config.list_physical_devices("GPU"))
