"""TFRecord framing: scanning a file's record headers, and writing TFRecord files to any tfoy path.

A TFRecord is `uint64 length | uint32 masked_crc32c(length) | data | uint32 masked_crc32c(data)` (little
endian). The header scan here is pure Python/numpy and cheap (one struct unpack per record, the 8-byte length
CRCs checked vectorised over all headers at once), so a reader can name the file and byte offset of a bad length
or a truncated file. Data CRCs are left to TensorFlow's C++ reader: a pure-Python CRC32C of every payload would
cost more than the whole tf.data pipeline.
"""

from __future__ import annotations

import logging
import struct
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np

from hdfs_io import fs
from hdfs_io.errors import HdfsIoError
from hdfs_io.paths import absolute_uri
from hdfs_io.publish import publish

log = logging.getLogger(__name__)

HEADER = 12  # length + its crc
FOOTER = 4
MAX_RECORD = 1 << 31  # anything larger is a corrupt length, not a record


def _crc32c_table() -> np.ndarray:
    poly = 0x82F63B78
    table = np.zeros(256, dtype=np.uint32)
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ poly if c & 1 else c >> 1
        table[i] = c
    return table


_TABLE = _crc32c_table()  # constant, computed once


def crc32c_rows(rows: np.ndarray) -> np.ndarray:
    """CRC32C of each row of a (n, k) uint8 array, vectorised over rows (k small: headers)."""
    crc = np.full(rows.shape[0], 0xFFFFFFFF, dtype=np.uint32)
    for i in range(rows.shape[1]):
        crc = _TABLE[(crc ^ rows[:, i]) & 0xFF] ^ (crc >> np.uint32(8))
    return crc ^ np.uint32(0xFFFFFFFF)


def masked_crc32c_rows(rows: np.ndarray) -> np.ndarray:
    crc = crc32c_rows(rows).astype(np.uint64)
    rotated = ((crc >> np.uint64(15)) | (crc << np.uint64(17))) & np.uint64(0xFFFFFFFF)
    return ((rotated + np.uint64(0xA282EAD8)) & np.uint64(0xFFFFFFFF)).astype(np.uint32)


def masked_crc32c(data: bytes) -> int:
    """TF's masked CRC32C of a short byte string (pure Python speed: use for headers and tests only)."""
    return int(masked_crc32c_rows(np.frombuffer(data, dtype=np.uint8).reshape(1, -1))[0])


class CorruptRecordError(HdfsIoError, OSError):
    """A TFRecord file whose framing or checksum is wrong; names the file and the byte offset."""

    def __init__(self, uri: str, offset: int, reason: str):
        super().__init__(f"{uri}: corrupt TFRecord at byte offset {offset}: {reason}")
        self.uri, self.offset, self.reason = uri, offset, reason


class Frame(NamedTuple):
    """One record's place in a file (a NamedTuple: a scan creates one per record, so creation cost matters)."""

    offset: int  # of the record's header
    length: int  # of its data

    @property
    def end(self) -> int:
        return self.offset + HEADER + self.length + FOOTER


def _length_crc_ok(buf: bytes | memoryview, pos: int) -> bool:
    """True when the header at pos holds the masked CRC32C of its 8-byte length (one header: pure Python is fine)."""
    (stored,) = struct.unpack_from("<I", buf, pos + 8)
    return masked_crc32c(bytes(buf[pos : pos + 8])) == stored


def scan_frames(buf: bytes | memoryview, uri: str = "<buffer>") -> tuple[list[Frame], CorruptRecordError | None]:
    """The records of a whole TFRecord file, up to the first framing error (returned, not raised).

    The error is the earliest one in the file, so that a reader reports where the damage is rather than where it
    became visible: a corrupt length that happens to land inside the file derails the walk into garbage, and the
    vectorised length-CRC check afterwards moves the error back to that record."""
    frames: list[Frame] = []
    n = len(buf)
    pos = 0
    unpack = struct.Struct("<Q").unpack_from
    error: CorruptRecordError | None = None
    append = frames.append
    while pos < n:
        if pos + HEADER > n:
            error = CorruptRecordError(uri, pos, f"truncated header ({n - pos} of {HEADER} bytes)")
            break
        (length,) = unpack(buf, pos)
        if length > MAX_RECORD or pos + HEADER + length + FOOTER > n:
            # A length that cannot be right is judged by its own CRC first: a flipped bit there is corruption at
            # this record, and only a length its CRC vouches for means the file really ends early.
            if not _length_crc_ok(buf, pos):
                error = CorruptRecordError(uri, pos, "length checksum mismatch")
            elif length > MAX_RECORD:
                error = CorruptRecordError(uri, pos, f"implausible record length {length}")
            else:
                error = CorruptRecordError(uri, pos, f"truncated record (length {length}, file ends at {n})")
            break
        append(Frame(pos, length))
        pos += HEADER + length + FOOTER
    if frames:
        arr = np.frombuffer(buf, dtype=np.uint8)
        offs = np.fromiter((f[0] for f in frames), dtype=np.int64, count=len(frames))
        heads = arr[offs[:, None] + np.arange(8)]
        stored = arr[offs[:, None] + np.arange(8, 12)].copy().view("<u4").ravel()
        bad = np.nonzero(masked_crc32c_rows(heads) != stored)[0]
        if bad.size:
            first = int(bad[0])
            error = CorruptRecordError(uri, frames[first].offset, "length checksum mismatch")
            frames = frames[:first]
    return frames, error


# ---- writing ------------------------------------------------------------------------------------------------


class TFRecordWriter:
    """Writes a TFRecord file to any tfoy path with TF's own writer (C++ CRCs, optional GZIP), under a hidden
    name beside the target, renamed into place on close: readers never see a half-written file, and a failure
    inside the `with` block leaves nothing (the temporary is removed, the target untouched)."""

    def __init__(self, path: str, compression: str | None = None, overwrite: bool = True):
        import tensorflow as tf

        self.uri = absolute_uri(path)
        if fs.exists(self.uri):
            if fs.stat(self.uri).is_dir:  # overwrite replaces a file, never a data set's folder of parts
                raise IsADirectoryError(f"{self.uri}: a folder; a TFRecord file goes at a file's path (e.g. "
                                        f"{self.uri}/part-00000)")
            if not overwrite:
                raise FileExistsError(f"{self.uri}: already exists")
        fs.makedirs(self.uri.rsplit("/", 1)[0])
        self._pending = publish(self.uri, replace=overwrite)
        options = tf.io.TFRecordOptions(compression_type=compression or "")
        self._writer = tf.io.TFRecordWriter(fs.tf_path(self._pending.tmp), options)
        self.count = 0

    def write(self, record: bytes | Any) -> None:
        """Writes serialized bytes, or anything with SerializeToString (tf.train.Example)."""
        if hasattr(record, "SerializeToString"):
            record = record.SerializeToString()
        self._writer.write(record)
        self.count += 1

    def close(self) -> None:
        self._writer.close()
        try:
            self._pending.commit()
        except BaseException:
            self._pending.abort()
            raise
        log.debug("wrote %d records to %s", self.count, self.uri)

    def __enter__(self) -> TFRecordWriter:
        return self

    def __exit__(self, exc_type: Any, *_: Any) -> None:
        if exc_type is None:
            self.close()
        else:
            self._writer.close()
            self._pending.abort()


def write_tfrecords(path: str, records: Iterable[bytes | Any], compression: str | None = None) -> int:
    """Writes records (bytes or tf.train.Example) to one TFRecord file; returns how many."""
    with TFRecordWriter(path, compression) as writer:
        for record in records:
            writer.write(record)
    return writer.count


# ---- tf.train.Example helpers -------------------------------------------------------------------------------


def make_example(features: Mapping[str, Any]) -> Any:
    """A tf.train.Example from a dict of int / float / bytes / str values or sequences / numpy arrays of them."""
    import tensorflow as tf

    feats = {}
    for name, value in features.items():
        values = np.asarray(value).ravel() if not isinstance(value, (bytes, str)) else np.asarray([value])
        kind = values.dtype.kind
        if kind in "iub":
            if kind == "u" and values.size and values.max() > np.iinfo(np.int64).max:  # would wrap negative
                raise ValueError(f"feature {name!r}: {values.max()} does not fit an int64_list")
            feats[name] = tf.train.Feature(int64_list=tf.train.Int64List(value=values.astype(np.int64).tolist()))
        elif kind == "f":
            feats[name] = tf.train.Feature(float_list=tf.train.FloatList(value=values.astype(np.float32).tolist()))
        elif kind in "SUO":
            # bytes(3) would be three zero bytes: mixed or non-text objects (None, ints too big for int64) are refused
            bad = [v for v in values.tolist() if not isinstance(v, bytes | bytearray | str)]
            if bad:
                raise TypeError(f"feature {name!r}: {bad[0]!r} ({type(bad[0]).__name__}) in a bytes feature; give "
                                "all ints, all floats, or all bytes/str")
            raw = [v.encode() if isinstance(v, str) else bytes(v) for v in values.tolist()]
            feats[name] = tf.train.Feature(bytes_list=tf.train.BytesList(value=raw))
        else:
            raise TypeError(f"feature {name!r}: unsupported dtype {values.dtype}")
    return tf.train.Example(features=tf.train.Features(feature=feats))


def parse_example_spec(shapes: Mapping[str, Sequence[int] | int], dtype: Any = None) -> dict[str, Any]:
    """FixedLenFeature specs for int64 features of given shapes, e.g. {"image": [784], "label": []}."""
    import tensorflow as tf

    dtype = dtype or tf.int64
    return {k: tf.io.FixedLenFeature([v] if isinstance(v, int) else list(v), dtype) for k, v in shapes.items()}
