"""What every tfoy node does before the user's code runs (YARN tasks, Spark-mode nodes, TFParallel tasks).

- TensorFlow gets hdfs:// and viewfs:// (hdfs_io's filesystem plugin) as soon as it is imported.
- Keras 3 gets its multi-worker `fit` fix (tfnode.keras_compat), also when it is imported; every `model.fit`
  reports progress (tfnode.progress) where the node has somewhere to report to.
- In a container of a Kerberized application, the HDFS delegation tokens get the NameNode names hdfs-native looks
  them up by (hdfs_io.tokens), before anything opens HDFS.
- `keras=2` selects tf-keras as `tf.keras` (TF_USE_LEGACY_KERAS=1) for this process and its children; it must be
  set before TensorFlow is imported, which is why the node does it first.
Nothing is imported here that the user's code would not import itself.
"""

from __future__ import annotations

import os
from pathlib import Path

from tfnode import keras_compat, progress


def prepare_node(keras: int | None = None, reporter: progress.Reporter | None = None) -> None:
    """reporter: where the progress callback tfoy adds to every `model.fit` reports (None: no callback)."""
    if keras is not None:
        os.environ.update(keras_compat.keras_env(keras))
    import hdfs_io  # noqa: F401 - importing it registers the filesystem when TF loads
    from hdfs_io import tokens

    tokens.alias_tokens(Path.cwd())

    keras_compat.install()
    if reporter is not None:  # after keras_compat: its fit patch must be the one the progress wrapper calls
        progress.install(reporter)
