"""TFoS's `compat` helpers for TF 2.x code written against tensorflowonspark."""

from __future__ import annotations

import logging
import tempfile
from typing import Any

log = logging.getLogger(__name__)


def export_saved_model(model: Any, export_dir: str, is_chief: bool = False) -> None:
    """Exports a Keras/TF model as a SavedModel; non-chief workers write to a throw-away folder (as TFoS does,
    because every worker of a multi-worker strategy must take part in saving).

    Delegates to `hdfs_io.export.export_saved_model` when that module exists (atomic, HDFS-aware), else uses
    tf.saved_model.save on a local or TF-supported path.
    """
    import tensorflow as tf

    if not is_chief:
        with tempfile.TemporaryDirectory(prefix="tfoy-export-") as tmp:
            tf.saved_model.save(model, tmp)
        return
    try:
        from hdfs_io.export import export_saved_model as hdfs_export
    except ImportError:
        hdfs_export = None
    if hdfs_export is not None:
        hdfs_export(model, export_dir)
        return
    tf.saved_model.save(model, export_dir)


def disable_auto_shard(options: Any) -> None:
    """Turns off tf.data auto-sharding on `options` (TFoS's compat.disable_auto_shard)."""
    import tensorflow as tf

    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.OFF


def is_gpu_available() -> bool:
    import tensorflow as tf

    return bool(tf.config.list_physical_devices("GPU"))
