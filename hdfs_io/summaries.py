"""TensorBoard logs on HDFS.

TF writes event files on hdfs:// itself (hdfs_io's TF filesystem publishes each one whole at every flush, so a
TensorBoard reading HDFS follows training), so `HdfsTensorBoard` writes its summaries straight to `log_dir`; Keras's
own `TensorBoard(log_dir="hdfs://…")` callback works as well. `sync_dir` stays for mirroring a local folder that
something else writes (new or grown files, each uploaded beside its target and renamed over it).

The callback writes epoch scalars itself with `tf.summary.write` and the "scalars" plugin metadata (what
`tf.summary.scalar` produces), as light as that: a TensorBoard reads the result as usual (`train/`, `validation/`,
`epoch_<metric>` tags, as Keras names them).
"""

from __future__ import annotations

import logging
import os
from typing import Any

import keras

from hdfs_io import fs
from hdfs_io.paths import absolute_uri

log = logging.getLogger(__name__)


def sync_dir(local_dir: str, remote_dir: str, known: dict[str, int] | None = None) -> list[str]:
    """Uploads files under local_dir that are missing on remote_dir or whose size changed since `known`
    (relative path -> size, updated in place); returns the relative paths uploaded."""
    known = {} if known is None else known
    remote = absolute_uri(remote_dir)
    uploaded = []
    for root, _, files in os.walk(local_dir):
        for name in sorted(files):
            path = os.path.join(root, name)
            rel = os.path.relpath(path, local_dir)
            size = os.path.getsize(path)
            if known.get(rel) == size:
                continue
            target = f"{remote}/{rel}"
            fs.makedirs(target.rsplit("/", 1)[0])
            fs.put(path, target)  # beside, then renamed in: TensorBoard never reads half an event file
            known[rel] = size
            uploaded.append(rel)
    return uploaded


def _scalar_metadata() -> Any:
    from tensorflow.core.framework import summary_pb2

    meta = summary_pb2.SummaryMetadata()
    meta.plugin_data.plugin_name = "scalars"
    meta.data_class = summary_pb2.DATA_CLASS_SCALAR
    return meta


class HdfsTensorBoard(keras.callbacks.Callback):
    """Epoch scalars (loss, metrics, learning rate) for TensorBoard, in a log_dir that may be on HDFS."""

    def __init__(self, log_dir: str, *, local_dir: str | None = None, ctx: Any = None, is_chief: bool | None = None):
        """local_dir: write there and mirror it to log_dir at each epoch end (only needed where TF cannot write
        log_dir itself); by default the chief writes log_dir directly and other workers write nothing."""
        super().__init__()
        self.remote_dir = absolute_uri(log_dir)
        fs.check_folder_or_absent(self.remote_dir, "log_dir (TensorBoard's logdir)")
        self.is_chief = is_chief if is_chief is not None else (ctx.is_chief if ctx is not None else True)
        self.local_dir = local_dir
        self._synced: dict[str, int] = {}
        self._writers: dict[str, Any] = {}

    def _writer(self, split: str) -> Any:
        import tensorflow as tf

        if split not in self._writers:
            where = os.path.join(self.local_dir, split) if self.local_dir else fs.tf_path(f"{self.remote_dir}/{split}")
            self._writers[split] = tf.summary.create_file_writer(where)
        return self._writers[split]

    def write_scalars(self, step: int, logs: dict[str, Any]) -> None:
        import tensorflow as tf

        if not self.is_chief and not self.local_dir:
            return
        meta = _scalar_metadata()
        for key, value in (logs or {}).items():
            split, name = ("validation", key[4:]) if key.startswith("val_") else ("train", key)
            with self._writer(split).as_default():
                tf.summary.write(f"epoch_{name}", tf.constant(float(value), tf.float32), step=step, metadata=meta)
        for writer in self._writers.values():
            writer.flush()

    def sync(self) -> list[str]:
        if not self.is_chief or not self.local_dir:
            return []  # written in place: nothing to mirror
        return sync_dir(self.local_dir, self.remote_dir, self._synced)

    def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
        logs = dict(logs or {})
        optimizer = getattr(self.model, "optimizer", None)
        if optimizer is not None and "learning_rate" not in logs:
            try:
                logs["learning_rate"] = float(keras.ops.convert_to_numpy(optimizer.learning_rate))
            except (TypeError, ValueError):
                pass
        self.write_scalars(epoch, logs)
        self.sync()

    def on_train_end(self, logs: Any = None) -> None:
        for writer in self._writers.values():
            writer.close()
        self.sync()
