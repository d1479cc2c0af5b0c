"""A Keras callback with BackupAndRestore semantics whose backups live on HDFS (or any tfoy path).

After each epoch the chief writes weights + metadata straight to a hidden `<dir>/.ckpt-<epoch>.<random>.tmp` of its
own (Keras and TF write hdfs:// themselves through hdfs_io's TF filesystem) and renames that to `<dir>/ckpt-<epoch>`
(one NameNode operation), keeping the last `keep` (None: every one). A complete checkpoint is only deleted once
`keep` newer ones are in place, so two writers on one folder (a zombie chief) or a kill at any point leave one to
resume from. Keras's own BackupAndRestore(backup_dir="hdfs://…") works on HDFS too; this one keeps several numbered
checkpoints and never reads a half-written one. On (re)start it restores the highest complete `ckpt-<n>` (a hidden
temporary or a folder without both files is never read) and training resumes at epoch n. Other workers save to a
throwaway local folder so collective ops under MultiWorkerMirroredStrategy still match.
"""

from __future__ import annotations

import json
import logging
import re
import tempfile
from typing import Any

import keras

from hdfs_io import fs
from hdfs_io.export import NUMBER, check_keep
from hdfs_io.paths import absolute_uri
from hdfs_io.publish import Publication, publish, temporary_beside

log = logging.getLogger(__name__)

WEIGHTS = "model.weights.h5"
METADATA = "training_metadata.json"
_CKPT = re.compile(rf"^ckpt-({NUMBER})$")  # as written (ckpt-7): a ckpt-07 is not found by number


def complete_checkpoints(backup_dir: str) -> list[int]:
    """Epoch numbers of complete checkpoints under backup_dir, oldest first."""
    return fs.numbered_dirs(absolute_uri(backup_dir), _CKPT,
                            lambda d: {WEIGHTS, METADATA} <= {f.name for f in fs.ls(d.uri)})


class HdfsBackupAndRestore(keras.callbacks.Callback):
    """Resume-after-failure backups on HDFS; see the module doc. Pass the same backup_dir on every attempt."""

    def __init__(self, backup_dir: str, keep: int | None = 2, *, ctx: Any = None, is_chief: bool | None = None,
                 delete_on_train_end: bool = False):
        super().__init__()
        check_keep(keep)  # here, not at the first epoch's end
        self.backup_dir = absolute_uri(backup_dir)
        fs.check_folder_or_absent(self.backup_dir, "backup_dir (of ckpt-<epoch> backups)")
        self.keep = keep
        self.is_chief = is_chief if is_chief is not None else (ctx.is_chief if ctx is not None else True)
        self.delete_on_train_end = delete_on_train_end
        self.restored_epoch: int | None = None

    def on_train_begin(self, logs: Any = None) -> None:
        done = complete_checkpoints(self.backup_dir)
        if not done:
            return
        epoch = done[-1]
        ckpt = f"{self.backup_dir}/ckpt-{epoch}"
        if self.model.optimizer is not None and not self.model.optimizer.built:
            self.model.optimizer.build(self.model.trainable_variables)
        try:
            self.model.load_weights(fs.tf_path(f"{ckpt}/{WEIGHTS}"))
        except ValueError as e:  # Keras names neither the file nor the cause
            raise ValueError(f"{ckpt}: this backup does not fit the model being trained (was the model changed? a "
                             f"changed model needs a new backup_dir): {e}") from e
        try:
            meta = json.loads(fs.read_bytes(f"{ckpt}/{METADATA}"))
            int(meta["epoch"])
        except (ValueError, TypeError, KeyError) as e:
            raise ValueError(f"{ckpt}/{METADATA}: not a tfoy backup's metadata ({e!r})") from None
        self.model._initial_epoch = int(meta["epoch"])  # what Keras's own BackupAndRestore sets
        self.restored_epoch = int(meta["epoch"])
        log.info("restored %s: resuming at epoch %d", ckpt, meta["epoch"])

    def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
        done_epochs = epoch + 1
        if not self.is_chief:
            # every worker saves (MultiWorkerMirroredStrategy's collectives must match); only the chief's counts
            with tempfile.TemporaryDirectory(prefix="tfoy-ckpt-") as local:
                self.model.save_weights(f"{local}/{WEIGHTS}")
            return
        final = f"{self.backup_dir}/ckpt-{done_epochs}"
        # a name of this writer's own: a second writer on the same folder (a zombie chief, two jobs given one
        # backup_dir) never deletes or fills it
        pending = publish(final)
        try:
            fs.makedirs(pending.tmp)
            self.model.save_weights(fs.tf_path(f"{pending.tmp}/{WEIGHTS}"))
            fs.write_bytes(f"{pending.tmp}/{METADATA}", json.dumps({"epoch": done_epochs}).encode())
            self._commit(pending, done_epochs)
        finally:
            pending.abort()  # nothing left to do once it was published
        for old in complete_checkpoints(self.backup_dir)[:-self.keep] if self.keep else []:
            fs.delete(f"{self.backup_dir}/ckpt-{old}", recursive=True)

    def _commit(self, pending: Publication, epoch: int) -> None:
        """Publishes the checkpoint; a complete one is never deleted before its replacement is in place."""
        try:
            pending.commit()
            log.info("checkpoint %s", pending.target)
            return
        except FileExistsError:
            pass
        if epoch in complete_checkpoints(self.backup_dir):
            log.info("checkpoint %s: another writer published this epoch first; keeping theirs", pending.target)
            return
        aside = temporary_beside(pending.target, "incomplete")  # a leftover of an old layout
        fs.rename(pending.target, aside)
        pending.commit()
        fs.delete(aside, recursive=True)
        log.info("checkpoint %s (replaced an incomplete one)", pending.target)

    def on_train_end(self, logs: Any = None) -> None:
        if self.delete_on_train_end and self.is_chief:
            fs.delete(self.backup_dir, recursive=True)
