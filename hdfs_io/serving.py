"""Hand-off to TF Serving, which cannot read HDFS: copy the newest complete exported version into a local
`model_base_path`, atomically there too.

TF Serving polls `model_base_path` and loads the highest integer-named child. A version is downloaded into a
dot-named folder beside it (which Serving ignores) and renamed to `<version>` only when whole, so Serving never
loads a partial version. Versions being written on HDFS (no `_SUCCESS` yet) are never pulled.
"""

from __future__ import annotations

import getpass
import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from hdfs_io import fs
from hdfs_io.errors import PathError
from hdfs_io.export import SUCCESS, VERSION_NAME, check_keep, list_versions
from hdfs_io.paths import absolute_uri
from hdfs_io.publish import temporary_beside

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PullResult:
    version: int
    path: Path
    pulled: bool  # False when that version was already there


def _newest_complete(export_base: str) -> tuple[str, int]:
    """(qualified base, newest complete version); FileNotFoundError naming the base when there is none."""
    base = absolute_uri(export_base)
    versions = list_versions(base)
    if not versions:
        raise FileNotFoundError(f"{base}: no complete SavedModel version (a numbered folder with {SUCCESS})")
    return base, versions[-1]


def local_versions(model_base_path: str | Path) -> list[int]:
    """Integer-named version folders under a local model_base_path, oldest first."""
    base = Path(model_base_path)
    if not base.is_dir():
        return []
    return sorted(int(p.name) for p in base.iterdir() if p.is_dir() and VERSION_NAME.match(p.name))


def _check_local_target(root: Path) -> None:
    """A model_base_path that cannot become a folder is named before anything is downloaded (not as mkdir's
    bare errno after the export base was listed)."""
    existing = root
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        what = "is a file" if existing == root else f"is under {existing}, which is a file"
        raise PathError(f"{root}: {what}; TF Serving's model_base_path is a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise PathError(f"{root}: {existing} is not writable by {getpass.getuser()}")


def pull_latest(export_base: str, model_base_path: str | Path, keep: int | None = None) -> PullResult:
    """Copies the newest complete version under export_base into model_base_path/<version>.

    Raises FileNotFoundError naming export_base when it holds no complete version, PathError naming
    model_base_path when it is (or is under) a file or not writable.
    """
    check_keep(keep)
    target_root = Path(model_base_path)
    _check_local_target(target_root)
    base, version = _newest_complete(export_base)
    target_root.mkdir(parents=True, exist_ok=True)
    target = target_root / str(version)
    if target.exists():
        if not any((target / n).is_file() for n in ("saved_model.pb", "saved_model.pbtxt")):  # put there by hand
            raise PathError(f"{target}: not a SavedModel (no saved_model.pb), and TF Serving would fail to load "
                            f"version {version}; remove it and pull again")
        result = PullResult(version, target, pulled=False)
    else:
        try:
            fs.get(f"{base}/{version}", str(target), overwrite=False)  # one rename: Serving sees all or nothing
            pulled = True
        except OSError:
            if not target.is_dir():
                raise
            pulled = False  # a concurrent pull put the same version in place first
        if pulled:
            log.info("pulled %s/%d into %s", base, version, target)
        result = PullResult(version, target, pulled=pulled)
    if keep:
        prune_local(target_root, keep)
    return result


def load_latest(export_base: str) -> tuple[int, object]:
    """(version, loaded SavedModel) of the newest complete version, for batch inference inside a job; TF reads it
    straight from HDFS (hdfs_io's TF filesystem), assets included."""
    import tensorflow as tf

    base, version = _newest_complete(export_base)
    return version, tf.saved_model.load(fs.tf_path(f"{base}/{version}"))


def prune_local(model_base_path: str | Path, keep: int) -> list[int]:
    """Removes all but the newest `keep` local versions; returns the removed ones.

    Each goes in one rename to a dot-named folder (which Serving ignores) before it is deleted, so TF Serving never
    loads or serves a version while its files are disappearing."""
    check_keep(keep)
    base = Path(model_base_path)
    old = local_versions(base)[:-keep]
    for version in old:
        doomed = fs.local_path(temporary_beside((base / str(version)).resolve().as_uri(), "deleting"))
        try:
            os.rename(base / str(version), doomed)
        except FileNotFoundError:
            continue  # pruned by a concurrent run
        shutil.rmtree(doomed)
    return old
