"""HDFS access for TensorFlow jobs: paths, a small filesystem facade over hdfs-native, tf.data readers,
checkpoints and atomic SavedModel export. Knows nothing of YARN or Spark.

Names are imported lazily so `import hdfs_io` (and the filesystem facade) does not load TensorFlow or Keras.
Importing it gives TensorFlow hdfs:// and viewfs:// (tf_bridge.register_when_tensorflow_loads): at once when TF is
loaded already, else when it is.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    # paths
    "absolute_uri": "hdfs_io.paths",
    "default_fs": "hdfs_io.paths",
    "PathError": "hdfs_io.errors",
    # filesystem
    "FileInfo": "hdfs_io.fs",
    "NameNodeUnreachableError": "hdfs_io.fs",
    "exists": "hdfs_io.fs",
    "stat": "hdfs_io.fs",
    "ls": "hdfs_io.fs",
    "glob": "hdfs_io.fs",
    "open": "hdfs_io.fs",
    "makedirs": "hdfs_io.fs",
    "delete": "hdfs_io.fs",
    "rename": "hdfs_io.fs",
    "put": "hdfs_io.fs",
    "get": "hdfs_io.fs",
    "read_bytes": "hdfs_io.fs",
    "write_bytes": "hdfs_io.fs",
    "fsspec_filesystem": "hdfs_io.adapters",
    "pyarrow_filesystem": "hdfs_io.adapters",
    # records and datasets
    "CorruptRecordError": "hdfs_io.records",
    "TFRecordWriter": "hdfs_io.records",
    "write_tfrecords": "hdfs_io.records",
    "make_example": "hdfs_io.records",
    "CsvFormatError": "hdfs_io.datasets",
    "ReadOptions": "hdfs_io.datasets",
    "ReadStats": "hdfs_io.datasets",
    "expand_paths": "hdfs_io.datasets",
    "tfrecord_dataset": "hdfs_io.datasets",
    "csv_dataset": "hdfs_io.datasets",
    # models
    "export_saved_model": "hdfs_io.export",
    "latest_version": "hdfs_io.export",
    "list_versions": "hdfs_io.export",
    "HdfsBackupAndRestore": "hdfs_io.checkpoint",
    "complete_checkpoints": "hdfs_io.checkpoint",
    "HdfsTensorBoard": "hdfs_io.summaries",
    "sync_dir": "hdfs_io.summaries",
}

__all__ = sorted(set(_EXPORTS) - {"open"})  # hdfs_io.open stays reachable, but `import *` must not shadow open


def _register_filesystem() -> None:
    from hdfs_io import tf_bridge

    tf_bridge.register_when_tensorflow_loads()


_register_filesystem()


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'hdfs_io' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
