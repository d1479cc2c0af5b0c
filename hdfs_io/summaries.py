"""TensorBoard logs on HDFS: TF 2.21 cannot write hdfs:// itself, so summaries are written to a local folder by
Keras's TensorBoard callback and the folder is mirrored to HDFS at each epoch end and at train end. Event files
only grow, so a sync uploads files that are new or whose size changed (whole-file rewrite, then atomic rename)."""

from __future__ import annotations

import logging
import os
import tempfile
import uuid
from typing import Any

import keras

from hdfs_io import fs
from hdfs_io.paths import absolute_uri

log = logging.getLogger(__name__)


def sync_dir(local_dir: str, remote_dir: str, known: dict[str, int] | None = None) -> list[str]:
    """Uploads files under local_dir that are missing on remote_dir or whose size changed since `known`
    (relative path -> size, updated in place). Each file is written beside its target and renamed over it, so a
    reading TensorBoard never sees a truncated event file. Returns the relative paths uploaded."""
    known = {} if known is None else known
    remote = absolute_uri(remote_dir)
    uploaded = []
    for root, _, files in os.walk(local_dir):
        for name in files:
            path = os.path.join(root, name)
            rel = os.path.relpath(path, local_dir)
            size = os.path.getsize(path)
            if known.get(rel) == size:
                continue
            target = f"{remote}/{rel}"
            parent, base = target.rsplit("/", 1)
            tmp = f"{parent}/.{base}.{uuid.uuid4().hex[:8]}.tmp"
            fs.makedirs(parent)
            fs.put(path, tmp)
            fs.rename(tmp, target, overwrite=True)
            known[rel] = size
            uploaded.append(rel)
    return uploaded


class HdfsTensorBoard(keras.callbacks.TensorBoard):
    """keras.callbacks.TensorBoard whose log_dir may be on HDFS: writes locally, mirrors at epoch and train end."""

    def __init__(self, log_dir: str, *, local_dir: str | None = None, ctx: Any = None, is_chief: bool | None = None,
                 **kwargs: Any):
        self.remote_dir = absolute_uri(log_dir)
        self.is_chief = is_chief if is_chief is not None else (ctx.is_chief if ctx is not None else True)
        self.local_dir = local_dir or tempfile.mkdtemp(prefix="tfoy-tb-")
        self._synced: dict[str, int] = {}
        super().__init__(log_dir=self.local_dir, **kwargs)

    def sync(self) -> list[str]:
        if not self.is_chief:
            return []
        return sync_dir(self.local_dir, self.remote_dir, self._synced)

    def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
        super().on_epoch_end(epoch, logs)
        for writer in (getattr(self, "_train_writer", None), getattr(self, "_val_writer", None)):
            if writer is not None:
                writer.flush()
        self.sync()

    def on_train_end(self, logs: Any = None) -> None:
        super().on_train_end(logs)  # closes the writers
        self.sync()
