"""HdfsBackupAndRestore's bad input on file:// paths (the hdfs:// behaviour, kill -9 resumes included, is tested in
tests/integration): refused at construction or named at restore, not a bare error after the first epoch."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from hdfs_io.checkpoint import HdfsBackupAndRestore


@pytest.mark.parametrize("keep", [0, 2.5, "2", True])
def test_keep_is_a_whole_number_checked_at_construction(tmp_path, keep):
    with pytest.raises(ValueError, match=f"keep: a whole number >= 1 .*got {keep!r}"):
        HdfsBackupAndRestore(f"file://{tmp_path}/b", keep=keep)


def test_a_backup_or_log_dir_that_is_a_file_is_refused_when_named(tmp_path):
    """Not at the first epoch's end (NotADirectoryError on a temporary under it, or TF's FailedPrecondition)."""
    from hdfs_io.summaries import HdfsTensorBoard

    (tmp_path / "b").write_text("x")
    with pytest.raises(NotADirectoryError, match=f"file://{tmp_path}/b: a file; backup_dir .* is a folder"):
        HdfsBackupAndRestore(f"file://{tmp_path}/b")
    with pytest.raises(NotADirectoryError, match=f"file://{tmp_path}/b: a file; log_dir .* is a folder"):
        HdfsTensorBoard(f"file://{tmp_path}/b")


def _fit(units: int, backup: str) -> None:
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(units)])
    model.compile("sgd", "mse")
    model.fit(np.zeros((8, 4)), np.zeros((8, units)), epochs=1, verbose=0,
              callbacks=[HdfsBackupAndRestore(backup, keep=None)])


def test_a_changed_model_names_the_backup_it_does_not_fit(tmp_path):
    backup = f"file://{tmp_path}/b"
    _fit(2, backup)
    with pytest.raises(ValueError, match=f"{backup}/ckpt-1: this backup does not fit the model being trained"):
        _fit(3, backup)
