"""Atomic, versioned SavedModel export in TF Serving's layout: `<base>/<integer version>/`.

A version is written by TF itself to a hidden folder beside it (hdfs_io's TF filesystem, `publish.py`) and renamed
to `<base>/<version>` in one NameNode operation, then `_SUCCESS` is written inside. So a poller (TF Serving, a sync
job, `latest_version`) never sees a half-written version; `latest_version` also ignores versions without
`_SUCCESS` (e.g. the publisher died between rename and marker). Only the chief publishes: under
MultiWorkerMirroredStrategy every worker must still run the save (it has collective ops), so the others write to a
throwaway local folder and never touch `<base>`.
"""

from __future__ import annotations

import inspect
import logging
import re
import tempfile
from typing import Any

from hdfs_io import fs
from hdfs_io.paths import absolute_uri
from hdfs_io.publish import publish, temporary_beside

log = logging.getLogger(__name__)

SUCCESS = "_SUCCESS"
# a version folder is named by its number as tfoy writes it back (`<base>/7`): a hand-made `0007` would be listed
# as 7 and then not found at <base>/7, so it is not taken for a version
NUMBER = r"0|[1-9][0-9]*"
VERSION_NAME = re.compile(rf"^(?:{NUMBER})$")


def _versions(base: str, complete_only: bool) -> list[int]:
    return fs.numbered_dirs(base, VERSION_NAME, (lambda d: fs.exists(f"{d.uri}/{SUCCESS}")) if complete_only else None)


def list_versions(base_path: str) -> list[int]:
    """Complete versions under base_path, oldest first."""
    return _versions(absolute_uri(base_path), complete_only=True)


def latest_version(base_path: str) -> int | None:
    """The highest complete version (with `_SUCCESS`), or None."""
    versions = list_versions(base_path)
    return versions[-1] if versions else None


def check_keep(keep: Any) -> None:
    """keep= (versions to retain) is a whole number >= 1, or None for all; checked before anything is written,
    so a bad value never leaves a new version behind a failed call."""
    if keep is not None and (isinstance(keep, bool) or not isinstance(keep, int) or keep < 1):
        raise ValueError(f"keep: a whole number >= 1 (or None to keep every version), got {keep!r}")


def save_saved_model(model: Any, local_dir: str, signatures: Any = None) -> None:
    """The SavedModel save both export layouts use (a Keras model's export(), else tf.saved_model.save)."""
    import tensorflow as tf

    if hasattr(model, "export") and signatures is None:
        # Keras 3 and tf-keras: an inference SavedModel with a serving_default signature (only Keras 3 has verbose)
        quiet = {"verbose": False} if "verbose" in inspect.signature(model.export).parameters else {}
        model.export(local_dir, **quiet)
    else:
        tf.saved_model.save(model, local_dir, signatures=signatures)


def save_on_worker(model: Any, signatures: Any = None) -> None:
    """A non-chief worker's save into a throw-away folder: under MultiWorkerMirroredStrategy every worker must run
    the same save (its collectives must match), but only the chief's is kept."""
    with tempfile.TemporaryDirectory(prefix="tfoy-export-") as local:
        save_saved_model(model, f"{local}/model", signatures)


def export_saved_model(
    model: Any,
    base_path: str,
    version: int | None = None,
    keep: int | None = None,
    *,
    ctx: Any = None,
    is_chief: bool | None = None,
    signatures: Any = None,
) -> str | None:
    """Exports `model` as `<base_path>/<version>` and returns its URI (None on non-chief workers).

    version: default one more than the highest existing version (1 for the first). keep: complete versions to
    retain (older ones deleted). Chief from `is_chief`, else `ctx.is_chief`, else True.
    """
    if version is not None and (isinstance(version, bool) or not isinstance(version, int) or version < 0):
        raise ValueError(f"version: a whole number >= 0 (TF Serving's version folders), got {version!r}")
    check_keep(keep)
    chief = is_chief if is_chief is not None else (ctx.is_chief if ctx is not None else True)
    if callable(getattr(ctx, "report", None)):  # a tfoy node's progress: the task is exporting now
        ctx.report(phase="exporting")
    if not chief:
        save_on_worker(model, signatures)
        log.info("not the chief: SavedModel written to a throwaway folder only")
        return None
    base = absolute_uri(base_path)
    fs.makedirs(base)
    if version is None:
        existing = _versions(base, complete_only=False)
        version = existing[-1] + 1 if existing else 1
    target = f"{base}/{version}"
    if fs.exists(target):
        raise FileExistsError(f"{target}: version {version} already exists")
    with publish(target) as p:  # one NameNode operation: the version appears whole or not at all
        save_saved_model(model, fs.tf_path(p.tmp), signatures)
    fs.write_bytes(f"{target}/{SUCCESS}", b"")
    log.info("exported SavedModel version %s", target)
    if keep:
        prune_versions(base, keep)
    return target


def prune_versions(base_path: str, keep: int) -> list[int]:
    """Deletes all but the newest `keep` complete versions; returns the deleted ones.

    Each is first renamed to a dot-named folder (one NameNode operation), so a poller never copies a version whose
    files are being deleted."""
    check_keep(keep)
    base = absolute_uri(base_path)
    old = list_versions(base)[:-keep]
    for v in old:
        doomed = temporary_beside(f"{base}/{v}", "deleting")
        try:
            fs.rename(f"{base}/{v}", doomed)
        except FileNotFoundError:
            continue  # pruned by a concurrent run
        fs.delete(doomed, recursive=True)
    return old
