"""Checking and repairing staged TFRecord files: counting their records, naming the first bad one, cutting bad ones
out (on_corrupt="skip").

TF's own errors say only "corrupted record at <offset>", without a file, and its batched reader stops at the first
bad record. A staged file is counted by its length fields before TF reads it; one that comes up short is scanned
here to name the file and byte offset (framing by records.scan_frames, data CRCs by TF's C++ reader, never per
record in Python). Streamed TFRecords need none of this: tf_bridge checks them as they pass.
"""

from __future__ import annotations

import bisect
import logging
import mmap
import os
import re
import shutil
import struct
from collections.abc import Sequence
from typing import Any, NoReturn

from hdfs_io import fs
from hdfs_io.read_stats import OnError, ReadStats
from hdfs_io.records import FOOTER, HEADER, CorruptRecordError, Frame, scan_frames

log = logging.getLogger("hdfs_io.datasets")  # the readers' logger: one name to configure, as before the split

CORRUPT_AT = re.compile(r"corrupted record at (\d+)")


def prepare_staged(uri: str, local: str, on_error: OnError, verify: bool, stats: ReadStats | None) -> int:
    """Number of records in the staged copy, or -1 when not counted; skip mode first cuts bad records out of it.
    (Staging in segments and from_generator were tried and measured slower: docs/hdfs_io.md, Performance.)"""
    count = -1
    if on_error == "skip":
        cut_bad_records(uri, local, stats)
    elif verify:
        count, end = count_frames(local)
        if end != os.path.getsize(local):
            explain(uri, local)
    return count


def explain(uri: str, local: str) -> NoReturn:
    """Raises the file's first framing or checksum error (TF stopped reading it early)."""
    frames, error = scan_file(local, uri)
    if error is not None:
        raise error
    _check_data_crcs(uri, local, frames, "raise", None)
    raise CorruptRecordError(uri, -1, "TensorFlow stopped reading early, but no bad record was found")


def cut_bad_records(uri: str, local: str, stats: ReadStats | None) -> None:
    """Cuts bad records out of the staged copy, counting them: after a framing error the rest of the file."""
    frames, error = scan_file(local, uri)
    if error is not None:
        log.warning("%s; the rest of the file is skipped", error)
        stats and stats.add(corrupt_records_skipped=1)
        with open(local, "r+b") as f:
            f.truncate(frames[-1].end if frames else 0)
    _check_data_crcs(uri, local, frames, "skip", stats)


def _check_data_crcs(uri: str, local: str, frames: list[Frame], on_error: OnError, stats: ReadStats | None) -> None:
    """Data CRCs are checked by TF's C++ reader, batched (no per-record Python): a good file costs that one pass.
    TF stops at the first bad record and names only its offset, and its batched reader cannot resume mid-file.
    Raise mode names that record. Skip mode checks the records after it with TF's random-access reader (same
    C++ checks, one call per record, as cheap as the header scan that skip mode pays anyway) and cuts all bad
    records out of the staged copy in one rewrite: re-reading the file after each bad record made skipping
    quadratic in the number of bad records. `frames` are in the staged copy's offsets (it is only ever cut at
    its end before this)."""
    import tensorflow as tf

    try:
        for _ in tf.data.TFRecordDataset(local, buffer_size=1 << 20).batch(8192):
            pass
        return
    except tf.errors.DataLossError as exc:
        match = CORRUPT_AT.search(str(exc))
        if not match or not frames:
            raise CorruptRecordError(uri, -1, f"TensorFlow could not read it: {exc.message}") from None
        # TF reports the offset of the bad record's data (after its 12-byte header)
        first = max(bisect.bisect_right([f.offset for f in frames], int(match.group(1))) - 1, 0)
    if on_error == "raise":
        raise CorruptRecordError(uri, frames[first].offset, "data checksum mismatch")
    bad = [frames[first], *bad_data_crcs(local, frames[first + 1:])]
    for frame in bad:
        log.warning("%s: skipping corrupt record at byte offset %d (data checksum mismatch)", uri, frame.offset)
    stats and stats.add(corrupt_records_skipped=len(bad))
    drop_ranges(local, [(f.offset, f.end) for f in bad])


def count_frames(local: str) -> tuple[int, int]:
    """(records, offset where the walk ended) following the length fields only: the file is whole iff the walk
    ends exactly at its size. Lengths are not checked here; TF's reader checks them and every CRC."""
    if os.path.getsize(local) == 0:
        return 0, 0
    unpack = struct.Struct("<Q").unpack_from
    count = pos = 0
    with open(local, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as m:
        limit = len(m) - HEADER
        while pos <= limit:
            pos += unpack(m, pos)[0] + HEADER + FOOTER
            count += 1
    return count, pos


def scan_file(local: str, uri: str) -> tuple[list[Frame], CorruptRecordError | None]:
    """records.scan_frames over a local file (its frames, and the first framing error if any)."""
    if os.path.getsize(local) == 0:
        return [], None
    with open(local, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as m:
        return scan_frames(memoryview(m), uri)


def record_reader(local: str) -> Any:
    """TF's random-access TFRecord reader (C++ framing and CRC checks of the record at any offset)."""
    from tensorflow.python.lib.io import tf_record

    return tf_record.tf_record_random_reader(local)


def bad_data_crcs(local: str, frames: Sequence[Frame]) -> list[Frame]:
    """The frames (already framed by scan_frames) whose data TF's reader rejects, in one pass over them."""
    import tensorflow as tf

    if not frames:
        return []
    bad = []
    reader = record_reader(local)
    try:
        for frame in frames:
            try:
                reader.read(frame.offset)
            except tf.errors.DataLossError:
                bad.append(frame)
    finally:
        reader.close()
    return bad


def drop_ranges(local: str, ranges: Sequence[tuple[int, int]]) -> None:
    """Rewrites the file without the given sorted, disjoint [start, end) byte ranges, in one pass."""
    if not ranges:
        return
    tmp = local + ".cut"
    with open(local, "rb") as src, open(tmp, "wb") as dst:
        pos = 0
        for start, end in ranges:
            copy_range(src, dst, pos, start - pos)
            pos = end
        copy_range(src, dst, pos, None)
    os.replace(tmp, local)


def copy_range(src: Any, dst: Any, start: int, length: int | None) -> None:
    """Copies length bytes (None: the rest) from start, in IO_CHUNK pieces so big files are not held in memory."""
    src.seek(start)
    if length is None:
        shutil.copyfileobj(src, dst, fs.IO_CHUNK)
        return
    while length > 0 and (chunk := src.read(min(length, fs.IO_CHUNK))):
        dst.write(chunk)
        length -= len(chunk)
