"""The staging area: files TF cannot stream are copied whole into a private folder and read there by TF's C++ readers.

GZIP files, the skip modes, checked local files and machines without tf_bridge's plugin *stage*: each file is
copied with hdfs-native into a private folder (RAM under /dev/shm when it has room), side by side on the
interleave's workers, read from there and deleted. TF's own errors say only "corrupted record at <offset>" or
"Expect 3 fields but have 2 in record", without a file, so a checked staged file is counted first (records by their
length fields, lines by their newlines: record_repair, csv_check) and read with errors ignored; one that comes up
short is explained afterwards, naming the file. Good files pay only the count.
"""

from __future__ import annotations

import gzip
import logging
import os
import re
import shutil
import tempfile
import weakref
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from hdfs_io import fs
from hdfs_io.read_stats import OnError, ReadStats
from hdfs_io.records import CorruptRecordError
from hdfs_io.tf_pipeline import interleave, then

log = logging.getLogger("hdfs_io.datasets")  # the readers' logger: one name to configure, as before the split

SHM = "/dev/shm"
SHM_MIN_FREE = 2 << 30


def new_stage_dir(parent: str | None) -> str:
    """A private folder for this dataset's staged files (each removed once read).

    Default: /dev/shm (RAM) when it has SHM_MIN_FREE free, else the temp folder. A staged file is written once
    and read once; on a disk file system the kernel still writes it back (and discards it on delete) on the same
    cores TF parses with, which cost ~30% of the read rate here. At most about 2 x cycle_length files are
    staged at a time. TFOY_STAGE_DIR or stage_dir choose the place."""
    parent = parent or os.environ.get("TFOY_STAGE_DIR")
    if parent is None and os.path.isdir(SHM) and os.access(SHM, os.W_OK):
        st = os.statvfs(SHM)
        if st.f_bavail * st.f_frsize >= SHM_MIN_FREE:
            parent = SHM
    if parent is not None:
        os.makedirs(parent, exist_ok=True)
    area = tempfile.mkdtemp(prefix=f"tfoy-stage-{os.getpid()}-", dir=parent)
    _remove_orphans(os.path.dirname(area))
    return area


def _remove_orphans(parent: str) -> None:
    """Removes staging folders of processes that are gone: a killed task (kill -9, a YARN container killed) never
    runs its clean-up, and in /dev/shm what it left would hold RAM until the node reboots."""
    for name in os.listdir(parent):
        match = re.fullmatch(r"tfoy-stage-(\d+)-\w+", name)
        if not match:
            continue
        try:
            os.kill(int(match.group(1)), 0)
        except ProcessLookupError:
            shutil.rmtree(os.path.join(parent, name), ignore_errors=True)
        except PermissionError:
            pass  # alive, another user's


@dataclass
class Stager:
    """Copies one file into the staging area for TF's C++ readers; runs inside tf.py_function on tf.data's threads.

    Checking (verify=True, errors raised) costs almost nothing on good files: TF's reader checks every record as it
    reads anyway, so the stager only counts what the file holds (TFRecord frames by their lengths, CSV lines by
    their newlines) and the dataset reads it with errors ignored and a sentinel after it. A file that yields fewer
    records than counted failed in TF, and only then is it scanned in Python to name the file and the offset or
    line. Skipping bad records (on_error="skip") needs the full scan up front, to cut them out of the staged copy.
    What is counted and scanned is the format's (record_repair.prepare_staged, csv_check.prepare_staged).
    """

    stage_dir: str
    compression: str | None
    on_error: OnError
    verify: bool
    stats: ReadStats | None

    def __post_init__(self) -> None:
        # Staged files are removed as soon as they are read; files of an abandoned iteration (an error, a take())
        # go with the folder when the last dataset/iterator using this stager is gone, or at interpreter exit.
        weakref.finalize(self, shutil.rmtree, self.stage_dir, True)

    @property
    def checked(self) -> bool:
        """True when reads are counted against the stager's count and a short file is explained."""
        return self.verify and self.on_error == "raise"

    def download(self, uri: str, count_lines: bool = False) -> tuple[str, int]:
        """(local copy, number of lines when asked: newlines, plus one for an unterminated last line)."""
        os.makedirs(self.stage_dir, exist_ok=True)
        name = re.sub(r"[^A-Za-z0-9._-]", "_", uri.rsplit("/", 1)[-1])[-80:]
        handle, local = tempfile.mkstemp(prefix="f-", suffix="-" + name, dir=self.stage_dir)
        os.close(handle)  # reopened below by name; kept open, every staged pass leaked a descriptor (and its RAM)
        lines, last = 0, b"\n"
        try:
            with fs.open(uri, "rb") as src, open(local, "wb") as dst:
                stream: Any = gzip.GzipFile(fileobj=src) if self.compression == "GZIP" else src
                try:
                    while chunk := stream.read(fs.IO_CHUNK):
                        dst.write(chunk)
                        if count_lines:
                            lines += chunk.count(b"\n")
                            last = chunk[-1:]
                except (EOFError, gzip.BadGzipFile, zlib.error) as exc:
                    if self.on_error == "raise":
                        raise CorruptRecordError(uri, dst.tell(), f"bad {self.compression} stream: {exc}") from exc
                    log.warning("%s: bad %s stream after %d bytes, rest skipped", uri, self.compression, dst.tell())
                n = dst.tell()
        except BaseException:
            self.remove(local)
            raise
        if self.stats:
            self.stats.add(files_staged=1, bytes_staged=n)
        return local, lines + (last != b"\n")

    def stage(self, uri: str, prepare: Callable[[str, int], int], count_lines: bool = False) -> tuple[str, int]:
        """(staged copy, prepare(local, lines)): prepare checks or cleans the copy and returns how many elements TF
        should read from it (-1: not counted). The copy is removed when either step raises."""
        local, lines = self.download(uri, count_lines)
        try:
            return local, prepare(local, lines)
        except BaseException:
            self.remove(local)
            raise

    def remove(self, local: str) -> None:
        if os.path.dirname(local) == self.stage_dir and os.path.exists(local):
            os.remove(local)


def staged_dataset(ds: Any, stager: Stager, stage_fn: Any, explain_fn: Any, reader: Any, cycle_length: int,
                   block_length: int, deterministic: bool | None) -> Any:
    """Interleaves the files' records: `stage_fn(uri)` stages a file and returns (local, count), `reader(local)`
    reads it. When the stager checks, a file that yields fewer than `count` elements is explained by
    `explain_fn(uri, local)`, which raises naming the file. Per-record work stays in TF's C++: every Python step
    is per file."""
    import tensorflow as tf

    def stage(uri: Any) -> Any:
        return stage_fn(uri.numpy().decode())

    def cleanup(path: Any) -> Any:
        stager.remove(path.numpy().decode())
        return path

    def explain(path: Any, uri: Any) -> Any:
        explain_fn(uri.numpy().decode(), path.numpy().decode())
        return path

    def after(fn: Any, local: Any, *more: Any) -> Any:
        return then(fn, [local, *more], reader(local))

    def read_staged(uri: Any, local: Any, count: Any) -> Any:
        out = reader(local)
        if stager.checked:
            # TF's errors name neither file nor line: read past them and explain a short file afterwards
            out = out.ignore_errors().concatenate(after(explain, local, uri)).take(count)
        return out.concatenate(after(cleanup, local))

    def open_file(uri: Any) -> Any:
        # Staging runs when the file's first element is wanted, on that file's interleave worker, so files are
        # staged side by side: in the interleave function itself it would run on tf.data's single element-making
        # thread, one file after another, and nothing would be read until every file of the cycle was staged.
        staged = tf.data.Dataset.from_tensors(uri).map(
            lambda u: tuple(tf.ensure_shape(t, []) for t in tf.py_function(stage, [u], [tf.string, tf.int64])))
        return staged.flat_map(lambda local, count: read_staged(uri, local, count))

    return interleave(ds, open_file, cycle_length, block_length, deterministic)
