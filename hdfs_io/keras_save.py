"""Keras 3 `model.save("hdfs://…/m.keras")` streamed to HDFS instead of built whole in memory first.

For a `.keras` path with a scheme, Keras 3 zips the whole model into an io.BytesIO, copies it out with
`getvalue()` and hands the copy to one GFile write: two more copies of the model in memory (4 GB more for a 2 GB
model) and nothing sent before the archive is complete. For hdfs:// and viewfs:// paths tfoy lets zipfile write
the archive straight into a GFile as it produces it (a non-seekable stream: zipfile then writes each entry's
sizes after its data), under a hidden name beside the target that `publish` renames into place. So a save that
fails half-way leaves the previous file as it was, as Keras's in-memory way did. Installed with the hdfs://
filesystem, when Keras is first imported; other paths and Keras 2 (tf-keras) are left alone.
docs/hdfs_io.md has the measurement.
"""

from __future__ import annotations

import io
import logging
from types import ModuleType
from typing import Any

log = logging.getLogger(__name__)

SCHEMES = ("hdfs://", "viewfs://")


class _Stream(io.RawIOBase):
    """A GFile as zipfile sees it: writable, tells its position, cannot seek."""

    def __init__(self, gfile: Any) -> None:
        super().__init__()
        self._gfile = gfile
        self._pos = 0

    def writable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def tell(self) -> int:
        return self._pos

    def write(self, data: Any) -> int:
        chunk = data if isinstance(data, bytes) else bytes(data)
        self._gfile.write(chunk)
        self._pos += len(chunk)
        return len(chunk)


def install(keras: ModuleType) -> None:
    """Wraps Keras 3's saving_lib.save_model (what `model.save` and ModelCheckpoint call) once."""
    if not str(getattr(keras, "__version__", "")).startswith("3."):
        return
    from keras.src.saving import saving_lib

    if getattr(saving_lib.save_model, "_tfoy_streamed", False):
        return
    original = saving_lib.save_model

    def save_model(model: Any, filepath: Any, weights_format: str = "h5", zipped: bool = True) -> Any:
        if not (zipped and isinstance(filepath, str) and filepath.startswith(SCHEMES)
                and filepath.endswith(".keras")):
            return original(model, filepath, weights_format=weights_format, zipped=zipped)
        import tensorflow as tf

        from hdfs_io.fs import tf_path
        from hdfs_io.publish import publish

        with publish(filepath, replace=True) as p, tf.io.gfile.GFile(tf_path(p.tmp), "wb") as f:
            # a file object takes Keras's own branch for one: its checks, then the archive written into it
            return original(model, _Stream(f), weights_format=weights_format)

    save_model.__doc__, save_model.__wrapped__ = original.__doc__, original  # type: ignore[attr-defined]
    save_model._tfoy_streamed = True  # type: ignore[attr-defined]
    saving_lib.save_model = save_model
