"""Write beside, then rename into place: how everything tfoy writes for others to read appears whole or not at all.

A reader of HDFS (TF Serving polling an export folder, a restarted worker looking for its last checkpoint, YARN
localizing an env archive, a second job listing a data set) can list a folder at any moment. Whatever is written
is therefore written under a hidden name beside its target (`.name.<random>.tmp`: hidden from Hadoop's input
formats and from tfoy's listings, unique so that two writers never share one) and renamed onto the target in one
NameNode operation. A failure on the way leaves the target as it was and removes the temporary.

    with publish(f"{base}/7") as p:          # p.tmp: where to write
        model.export(fs.tf_path(p.tmp))      # renamed onto <base>/7 on a clean exit, deleted on an error

`replace=True` lets the target exist already: a file is replaced by the same single rename (HDFS OVERWRITE); a
folder (HDFS cannot rename onto a non-empty one) is set aside first, the new one renamed in, the old one deleted
last, and put back if the rename fails: a reader may find no target for a moment, never a mixed one.
"""

from __future__ import annotations

import logging
import uuid
from types import TracebackType

from hdfs_io import fs
from hdfs_io.paths import absolute_uri

log = logging.getLogger(__name__)


def temporary_beside(target: str, tag: str = "tmp") -> str:
    """A hidden name unique to one writer, in the target's folder (a rename never crosses folders or NameNodes)."""
    parent, name = target.rstrip("/").rsplit("/", 1)
    return f"{parent}/.{name}.{uuid.uuid4().hex[:12]}.{tag}"


def delete_quietly(uri: str) -> None:
    """Cleanup that must not hide the error being handled (a NameNode that failed the write may fail this too)."""
    try:
        fs.delete(uri, recursive=True)
    except OSError as exc:
        log.warning("could not delete %s: %s", uri, exc)


class Publication:
    """One pending write of `target`: write to `tmp`, then `commit()` (or leave the `with` block cleanly).

    commit() may be retried after it raised (say FileExistsError, when a concurrent writer got there first: the
    caller decides whether theirs is good enough, then calls abort() or commits again). An exception out of the
    `with` block, or abort(), deletes the temporary."""

    def __init__(self, target: str, replace: bool = False, tag: str = "tmp") -> None:
        self.target = absolute_uri(target).rstrip("/")  # a home-relative path, as every other helper takes
        self.replace = replace
        self.tmp = temporary_beside(self.target, tag)
        self.done = False

    def commit(self) -> str:
        if self.done:
            return self.target
        if self.replace and fs.isdir(self.target):
            if not fs.isdir(self.tmp):  # replace swaps a folder for a folder (a version), never for one file
                raise IsADirectoryError(f"{self.target}: a folder, not replaced by a file")
            self._swap_folder()
        else:
            fs.rename(self.tmp, self.target, overwrite=self.replace)
        self.done = True
        return self.target

    def _swap_folder(self) -> None:
        old = temporary_beside(self.target, "old")
        fs.rename(self.target, old)
        try:
            fs.rename(self.tmp, self.target)
        except BaseException:
            fs.rename(old, self.target)
            raise
        delete_quietly(old)

    def abort(self) -> None:
        if not self.done:
            delete_quietly(self.tmp)
            self.done = True

    def __enter__(self) -> Publication:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if exc_type is not None:
            self.abort()
            return
        try:
            self.commit()
        except BaseException:
            self.abort()
            raise


def publish(target: str, replace: bool = False, tag: str = "tmp") -> Publication:
    """The pending write of `target`, used as a context manager (see the module docstring)."""
    return Publication(target, replace, tag)


def publish_bytes(target: str, data: bytes, replace: bool = True) -> str:
    """`data` as the whole content of `target`, never half of it."""
    with publish(target, replace) as p:
        fs.write_bytes(p.tmp, data)
    return p.target
