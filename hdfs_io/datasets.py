"""tf.data readers for TFRecord and CSV files on HDFS (or anything else tfoy paths name).

Per-record work (framing, CRC, parsing) always stays in TF's C++ readers; what differs is how bytes reach them.
When TensorFlow has a filesystem for the scheme (`file`, or `hdfs` with tensorflow-io on older TF) it opens the
files itself. HDFS files are *streamed*: tf_bridge's filesystem plugin lets TF's TFRecordDataset / TextLineDataset
read them as the bytes arrive. GZIP files, the skip modes, and machines without the plugin *stage* instead: each
file is copied with hdfs-native into a private folder (RAM under /dev/shm when it has room), side by side on the
interleave's workers, read from there and deleted.

TF's own errors say only "corrupted record at <offset>" or "Expect 3 fields but have 2 in record", without a file.
Streamed TFRecords are checked by the plugin as they pass (file and offset named); streamed CSV counts decoded
batches against the lines the plugin saw; staged files are counted first (records by their length fields, lines
by their newlines) and read with errors ignored. A file that comes up short is scanned in Python to name the file
and the line or byte offset. Good files pay only the count.
"""

from __future__ import annotations

import bisect
import gzip
import io
import logging
import mmap
import os
import random
import re
import shutil
import struct
import tempfile
import threading
import weakref
import zlib
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from itertools import islice
from typing import Any, Literal, NamedTuple, NoReturn

from hdfs_io import fs, tf_bridge
from hdfs_io.errors import HdfsIoError
from hdfs_io.paths import absolute_uri, split_uri
from hdfs_io.records import FOOTER, HEADER, CorruptRecordError, Frame, scan_frames

log = logging.getLogger(__name__)

OnError = Literal["raise", "skip"]
_CORRUPT_AT = re.compile(r"corrupted record at (\d+)")


@dataclass
class ReadStats:
    """Counters a caller can pass in to learn what a reader skipped (updated from tf.data's threads)."""

    files_staged: int = 0  # copied whole into the staging area first
    bytes_staged: int = 0
    files_streamed: int = 0  # read by TF straight from HDFS (tf_bridge)
    bytes_streamed: int = 0
    corrupt_records_skipped: int = 0
    bad_lines_skipped: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def add(self, **counts: int) -> None:
        with self._lock:
            for key, value in counts.items():
                setattr(self, key, getattr(self, key) + value)


class CsvFormatError(HdfsIoError, ValueError):
    """A CSV line with the wrong number of fields or a value that does not parse; names file and line."""

    def __init__(self, uri: str, line: int, reason: str):
        super().__init__(f"{uri}:{line}: {reason}")
        self.uri, self.line, self.reason = uri, line, reason


# ---- file lists -------------------------------------------------------------------------------------------------


HIDDEN_PREFIXES = ("_", ".")  # Hadoop FileInputFormat's hiddenFileFilter: _SUCCESS, _temporary, .crc, .x.tmp


def _is_glob(path: str) -> bool:
    return any(c in path for c in "*?[")


def _hidden_below_glob(pattern: str, uri: str) -> bool:
    """True when a name the glob matched (from its first wildcard component on) is hidden, as Hadoop's input
    formats judge: job markers (`_SUCCESS`, `_logs`, and what sits in `_temporary/`), checksum files
    (`.part-0.crc`) and writers' temporaries (`.name.tfoy-tmp-…`), none of which hold records."""
    parts = absolute_uri(pattern).rstrip("/").split("/")
    fixed = next((i for i, part in enumerate(parts) if _is_glob(part)), len(parts))
    return any(name.startswith(HIDDEN_PREFIXES) for name in uri.rstrip("/").split("/")[fixed:])


def expand_paths(paths_or_globs: str | Sequence[str]) -> list[str]:
    """Sorted file URIs for paths, globs or folders. As with Hadoop's FileInputFormat, what a glob or a folder
    brings in leaves out hidden names (`_`/`.` prefixed: `_SUCCESS`, `.x.crc`, temporaries being written), which
    would otherwise be read as corrupt records; a file named explicitly is read whatever its name, since the
    caller asked for it. Raises FileNotFoundError naming the first path or glob that yields no file."""
    items = [paths_or_globs] if isinstance(paths_or_globs, str) else list(paths_or_globs)
    if not items:
        raise FileNotFoundError("no input paths given")
    out: list[str] = []
    for item in items:
        matches = fs.glob(item)
        if not matches:
            raise FileNotFoundError(f"{absolute_uri(item)}: no such file, or the glob matches nothing")
        if _is_glob(item):
            visible = [uri for uri in matches if not _hidden_below_glob(item, uri)]
            if not visible:
                raise FileNotFoundError(
                    f"{absolute_uri(item)}: the glob matches only hidden files ({', '.join(matches[:3])}"
                    f"{', …' if len(matches) > 3 else ''}), which are not read")
            matches = visible
        for uri in matches:
            if fs.isdir(uri):
                out += [f.uri for f in fs.ls(uri) if not f.is_dir and not f.name.startswith(HIDDEN_PREFIXES)]
            else:
                out.append(uri)
    if not out:
        raise FileNotFoundError(f"{items}: only empty folders (or folders of hidden files)")
    return sorted(dict.fromkeys(out))


def shard_files(
    files: Sequence[str], num_shards: int = 1, shard_index: int = 0, shuffle: bool = False, seed: int | None = None
) -> list[str]:
    """This worker's files: the (seeded, so identical on every worker) shuffled list, every num_shards-th."""
    if not 0 <= shard_index < num_shards:
        raise ValueError(f"shard_index {shard_index} not in [0, {num_shards})")
    files = sorted(files)
    if shuffle:
        random.Random(seed).shuffle(files)
    mine = files[shard_index::num_shards]
    if not mine:
        raise ValueError(
            f"{len(files)} files cannot be sharded by file over {num_shards} workers: worker {shard_index} gets none"
        )
    return mine


def _shard_args(ctx: Any, num_shards: int | None, shard_index: int | None) -> tuple[int, int]:
    if ctx is not None:
        return (num_shards or ctx.num_shards), (shard_index if shard_index is not None else ctx.shard_index)
    return num_shards or 1, shard_index or 0


def tf_native(uri: str) -> bool:
    """True when TensorFlow has its own filesystem for this URI's scheme (file; gs). hdfs:// and viewfs:// are
    TF's through hdfs_io's plugin too, but its readers take the checked private names (tf_bridge) instead."""
    import tensorflow as tf

    scheme = split_uri(uri)[0]
    return scheme == "file" or (scheme not in fs.HADOOP_SCHEMES and scheme in tf.io.gfile.get_registered_schemes())


# ---- staging ---------------------------------------------------------------------------------------------------


@dataclass
class _Stager:
    """Copies one file into the staging area for TF's C++ readers; runs inside tf.py_function on tf.data's threads.

    Checking (verify=True, errors raised) costs almost nothing on good files: TF's reader checks every record as it
    reads anyway, so the stager only counts what the file holds (TFRecord frames by their lengths, CSV lines by
    their newlines) and the dataset reads it with errors ignored and a sentinel after it. A file that yields fewer
    records than counted failed in TF, and only then is it scanned in Python to name the file and the offset or
    line. Skipping bad records (on_error="skip") needs the full scan up front, to cut them out of the staged copy.
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

    def _download(self, uri: str, count_lines: bool = False) -> tuple[str, int]:
        """(local copy, number of lines when asked: newlines, plus one for an unterminated last line)."""
        os.makedirs(self.stage_dir, exist_ok=True)
        name = re.sub(r"[^A-Za-z0-9._-]", "_", uri.rsplit("/", 1)[-1])[-80:]
        local = tempfile.mkstemp(prefix="f-", suffix="-" + name, dir=self.stage_dir)[1]
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

    def remove(self, local: str) -> None:
        if os.path.dirname(local) == self.stage_dir and os.path.exists(local):
            os.remove(local)

    # -- TFRecord --
    def tfrecord(self, uri: str) -> tuple[str, int]:
        """(staged copy, number of records in it, or -1 when not counted).

        Tried and measured slower (benchmarks/hdfs_read.py, 2 cores): staging in segments of whole records that
        double in size (records flow sooner, but walking and joining chunks in Python cost more CPU than that
        saved), and a Python generator (tf.data's from_generator) handing out the staged files."""
        local, _ = self._download(uri)
        try:
            count = -1
            if self.on_error == "skip":
                self._clean_tfrecord(uri, local)
            elif self.verify:
                count, end = _count_frames(local)
                if end != os.path.getsize(local):
                    self.explain_tfrecord(uri, local)
        except BaseException:
            self.remove(local)
            raise
        return local, count

    def explain_tfrecord(self, uri: str, local: str) -> NoReturn:
        """Raises the file's first framing or checksum error (TF stopped reading it early)."""
        frames, error = _scan_file(local, uri)
        if error is not None:
            raise error
        self._verify_tfrecord(uri, local, frames)
        raise CorruptRecordError(uri, -1, "TensorFlow stopped reading early, but no bad record was found")

    def _clean_tfrecord(self, uri: str, local: str) -> None:
        """Cuts bad records out of the staged copy, counting them: after a framing error the rest of the file."""
        frames, error = _scan_file(local, uri)
        if error is not None:
            log.warning("%s; the rest of the file is skipped", error)
            self.stats and self.stats.add(corrupt_records_skipped=1)
            with open(local, "r+b") as f:
                f.truncate(frames[-1].end if frames else 0)
        self._verify_tfrecord(uri, local, frames)

    def _verify_tfrecord(self, uri: str, local: str, frames: list[Frame]) -> None:
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
            match = _CORRUPT_AT.search(str(exc))
            if not match or not frames:
                raise CorruptRecordError(uri, -1, f"TensorFlow could not read it: {exc.message}") from None
            # TF reports the offset of the bad record's data (after its 12-byte header)
            first = max(bisect.bisect_right([f.offset for f in frames], int(match.group(1))) - 1, 0)
        if self.on_error == "raise":
            raise CorruptRecordError(uri, frames[first].offset, "data checksum mismatch")
        bad = [frames[first], *_bad_data_crcs(local, frames[first + 1:])]
        for frame in bad:
            log.warning("%s: skipping corrupt record at byte offset %d (data checksum mismatch)", uri, frame.offset)
        self.stats and self.stats.add(corrupt_records_skipped=len(bad))
        _drop_ranges(local, [(f.offset, f.end) for f in bad])

    # -- CSV --
    def csv(self, uri: str, spec: _CsvSpec) -> tuple[str, int]:
        """(staged copy, number of data lines in it, or -1 when the reader need not count)."""
        local, lines = self._download(uri, count_lines=True)
        try:
            if self.on_error == "skip":
                self._clean_csv(uri, local, spec)
                return local, -1
            return local, max(lines - spec.header, 0) if self.verify else -1
        except BaseException:
            self.remove(local)
            raise

    def explain_csv(self, uri: str, local: str, spec: _CsvSpec) -> NoReturn:
        """Raises the file's first bad line (TF stopped parsing it early)."""
        bad = _find_bad_lines(local, spec)
        if not bad:
            raise CsvFormatError(uri, 0, "TensorFlow rejected the file but no bad line was found")
        raise CsvFormatError(uri, bad[0].line, bad[0].reason)

    def _clean_csv(self, uri: str, local: str, spec: _CsvSpec) -> None:
        import tensorflow as tf

        try:
            for _ in spec.lines(local).batch(8192).map(spec.decode):
                pass
            return
        except (tf.errors.InvalidArgumentError, tf.errors.DataLossError):
            pass
        bad = _find_bad_lines(local, spec)
        drop: set[int] = set()
        for b in bad:
            lines = "line skipped" if b.last == b.line else f"lines {b.line}-{b.last} skipped"
            log.warning("%s:%d: %s (%s)", uri, b.line, b.reason, lines)
            drop.update(range(b.line, b.last + 1))
        self.stats and self.stats.add(bad_lines_skipped=len(drop))
        _drop_lines(local, drop)


def _count_frames(local: str) -> tuple[int, int]:
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


def _scan_file(local: str, uri: str) -> tuple[list[Frame], CorruptRecordError | None]:
    if os.path.getsize(local) == 0:
        return [], None
    with open(local, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as m:
        return scan_frames(memoryview(m), uri)


def _record_reader(local: str) -> Any:
    """TF's random-access TFRecord reader (C++ framing and CRC checks of the record at any offset)."""
    from tensorflow.python.lib.io import tf_record

    return tf_record.tf_record_random_reader(local)


def _bad_data_crcs(local: str, frames: Sequence[Frame]) -> list[Frame]:
    """The frames (already framed by scan_frames) whose data TF's reader rejects, in one pass over them."""
    import tensorflow as tf

    if not frames:
        return []
    bad = []
    reader = _record_reader(local)
    try:
        for frame in frames:
            try:
                reader.read(frame.offset)
            except tf.errors.DataLossError:
                bad.append(frame)
    finally:
        reader.close()
    return bad


def _drop_ranges(local: str, ranges: Sequence[tuple[int, int]]) -> None:
    """Rewrites the file without the given sorted, disjoint [start, end) byte ranges, in one pass."""
    if not ranges:
        return
    tmp = local + ".cut"
    with open(local, "rb") as src, open(tmp, "wb") as dst:
        pos = 0
        for start, end in ranges:
            _copy_range(src, dst, pos, start - pos)
            pos = end
        _copy_range(src, dst, pos, None)
    os.replace(tmp, local)


def _copy_range(src: Any, dst: Any, start: int, length: int | None) -> None:
    """Copies length bytes (None: the rest) from start, in IO_CHUNK pieces so big files are not held in memory."""
    src.seek(start)
    if length is None:
        shutil.copyfileobj(src, dst, fs.IO_CHUNK)
        return
    while length > 0 and (chunk := src.read(min(length, fs.IO_CHUNK))):
        dst.write(chunk)
        length -= len(chunk)


# ---- CSV parsing spec ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _CsvSpec:
    record_defaults: tuple[Any, ...]
    header: bool
    select_cols: tuple[int, ...] | None
    field_delim: str
    na_value: str

    def lines(self, path: Any) -> Any:
        import tensorflow as tf

        ds = tf.data.TextLineDataset(path, buffer_size=1 << 20)
        return ds.skip(1) if self.header else ds

    def decode(self, lines: Any) -> Any:
        """Vectorised parsing of a batch of lines (much faster than CsvDataset's per-row tensors for wide rows)."""
        import tensorflow as tf

        defaults = [tf.constant([], d) if isinstance(d, tf.dtypes.DType) else tf.constant([d])
                    for d in self.record_defaults]
        return tuple(tf.io.decode_csv(lines, defaults, field_delim=self.field_delim, na_value=self.na_value,
                                      select_cols=list(self.select_cols) if self.select_cols is not None else None))

    def dataset(self, path: Any) -> Any:
        """Rows of one file, parsed by TF's C++ CSV decoder (one line per record: no quoted newlines)."""
        return self.lines(path).batch(1024).map(self.decode).unbatch()


def _checker(default: Any) -> tuple[Any, bool]:
    """(parser for a field, required) from a record default: a dtype means required, a value means optional."""
    import tensorflow as tf

    dtype = tf.as_dtype(default) if isinstance(default, tf.dtypes.DType) else tf.constant(default).dtype
    required = isinstance(default, tf.dtypes.DType)
    if dtype.is_integer:
        return int, required
    if dtype.is_floating:
        return float, required
    return str, required


class _BadLine(NamedTuple):
    line: int  # 1-based, header included: where the bad record starts
    reason: str
    last: int  # its last line (a record with a newline inside quotes spans several)


class _Row(NamedTuple):
    first: int
    last: int
    fields: list[str]
    problem: str | None  # a quoting error, which TF's decoder rejects too


MAX_QUOTED_LINES = 100  # how far a quoted field left open is followed to tell a quoted newline from a stray quote


def _split_csv_line(text: str, delim: str) -> tuple[list[str], str | None, bool]:
    """(fields, what is wrong, whether it ends inside a quoted field) by the rules of TF's decode_csv, which are
    RFC 4180's within a record: a field may be quoted, with the delimiter, newlines and doubled quotes inside; an
    unquoted field may hold no quote, CR or LF (TF skips those where a field starts). The Python check must
    reject exactly what TF rejects, or a bad line goes unnamed ("no bad line was found") and skip mode cannot cut
    it out (tests/unit/test_records_csv_quoting.py compares the two)."""
    if '"' not in text and "\r" not in text and "\n" not in text:
        return (text.split(delim) if text else []), None, False  # TF sees no field at all in an empty line
    fields: list[str] = []
    pos, n = 0, len(text)
    while pos < n:
        if text[pos] in "\r\n":
            pos += 1
            continue
        if text[pos] == '"':
            parts, i = [], pos + 1
            while True:
                j = text.find('"', i)
                if j < 0:
                    return fields, f"column {len(fields)}: quoted field not closed on this line", True
                parts.append(text[i:j])
                if text.startswith('"', j + 1):  # a doubled quote inside the field
                    parts.append('"')
                    i = j + 2
                    continue
                break
            pos = j + 1
            if pos < n and text[pos] != delim:
                return fields, (f"column {len(fields)}: text after a quoted field's closing quote (a quote inside "
                                f"a quoted field must be doubled)"), False
            fields.append("".join(parts))
        else:
            j = text.find(delim, pos)
            value = text[pos:] if j < 0 else text[pos:j]
            for char, name in (('"', "quote"), ("\r", "carriage return"), ("\n", "newline")):
                if char in value:
                    return fields, (f"column {len(fields)}: {name} inside an unquoted field (quote the field, "
                                    f"doubling the quotes inside it)"), False
            fields.append(value)
            pos = n if j < 0 else j
        pos += 1  # past the delimiter
    if text.endswith(delim):
        fields.append("")  # an empty last field
    return fields, None, False


def _text_lines(local: str) -> Iterator[str]:
    """The file's lines as TF's TextLineDataset cuts them: at each \\n, without it or a \\r before it."""
    with open(local, "rb") as f:
        for raw in f:
            line = raw[:-1] if raw.endswith(b"\n") else raw
            if line.endswith(b"\r"):
                line = line[:-1]
            yield line.decode("utf-8", errors="replace")


def _csv_rows(local: str, delim: str, header: bool) -> Iterator[_Row]:
    """The file's records with their line numbers. TF reads one record per line (like Hadoop's TextInputFormat),
    so a quoted field with a newline inside comes to it as broken lines; such a record is recognised (its quote
    closes within MAX_QUOTED_LINES lines and the whole parses) and reported once, with all its lines, instead of
    as a series of confusing quoting errors whose line numbers no longer match the file's."""
    lines = _text_lines(local)
    ahead: deque[str] = deque()
    lineno = 0
    while (text := ahead.popleft() if ahead else next(lines, None)) is not None:
        lineno += 1
        fields, problem, open_quote = _split_csv_line(text, delim)
        if open_quote and not (header and lineno == 1):  # TF skips exactly one line of header
            quotes, span = text.count('"'), 0
            while quotes % 2 and span < MAX_QUOTED_LINES:
                if span == len(ahead):
                    more = next(lines, None)
                    if more is None:
                        break
                    ahead.append(more)
                quotes += ahead[span].count('"')
                span += 1
            if quotes % 2 == 0 and span:
                joined, joined_problem, _ = _split_csv_line("\n".join([text, *islice(ahead, span)]), delim)
                if joined_problem is None:
                    for _ in range(span):
                        ahead.popleft()
                    yield _Row(lineno, lineno + span, joined, (
                        f"newline inside a quoted field (the record spans lines {lineno}-{lineno + span}): records "
                        f"must be one per line, as with Hadoop's TextInputFormat"))
                    lineno += span
                    continue
        yield _Row(lineno, lineno, fields, problem)


def _find_bad_lines(local: str, spec: _CsvSpec) -> list[_BadLine]:
    """Python pass over a file TF rejected, to name its bad lines (1-based, header included)."""
    checks = [_checker(d) for d in spec.record_defaults]
    cols = list(spec.select_cols) if spec.select_cols is not None else list(range(len(checks)))
    bad: list[_BadLine] = []
    expected: int | None = None if spec.select_cols is not None else len(checks)
    for row in _csv_rows(local, spec.field_delim, spec.header):
        if row.first == 1 and spec.header:
            if row.problem is None:
                expected = expected or len(row.fields)
            continue
        if expected is None and row.problem is None:
            expected = len(row.fields)
        reason = row.problem or _field_problem(row.fields, expected, cols, checks, spec.na_value)
        if reason is not None:
            bad.append(_BadLine(row.first, reason, row.last))
    return bad


def _field_problem(fields: list[str], expected: int | None, cols: list[int], checks: list[tuple[Any, bool]],
                   na_value: str) -> str | None:
    """What TF's decoder would reject in a well-quoted record: its field count, or a value of a selected column."""
    if len(fields) != expected:
        return f"expected {expected} fields, got {len(fields)}"
    for col, (parse, required) in zip(cols, checks, strict=False):
        value = fields[col]
        if value == na_value or value == "":
            if required:
                return f"column {col}: missing value and no default"
            continue
        try:
            parse(value)
        except ValueError:
            return f"column {col}: cannot parse {value!r} as {parse.__name__}"
    return None


def _drop_lines(local: str, lines: set[int]) -> None:
    tmp = local + ".cut"
    with open(local, "rb") as src, open(tmp, "wb") as dst:
        for lineno, line in enumerate(io.BufferedReader(src), start=1):  # type: ignore[arg-type]
            if lineno not in lines:
                dst.write(line)
    os.replace(tmp, local)


# ---- the datasets --------------------------------------------------------------------------------------------------


def _file_dataset(
    paths_or_globs: str | Sequence[str],
    ctx: Any,
    num_shards: int | None,
    shard_index: int | None,
    shuffle: bool,
    seed: int | None,
) -> list[str]:
    """This worker's files (sorted, or in the seeded shuffled order every worker agrees on)."""
    n, i = _shard_args(ctx, num_shards, shard_index)
    files = shard_files(expand_paths(paths_or_globs), n, i, shuffle, seed)
    log.info("reading %d files (shard %d of %d)", len(files), i, n)
    return files


def _names_dataset(names: list[str], shuffle: bool, seed: int | None) -> Any:
    """The files as a dataset; with shuffle, their order changes each epoch (seeded)."""
    import tensorflow as tf

    ds = tf.data.Dataset.from_tensor_slices(names)
    if shuffle and len(names) > 1:
        ds = ds.shuffle(len(names), seed=seed, reshuffle_each_iteration=True)
    return ds


def _interleave(ds: Any, reader: Any, cycle_length: int, block_length: int, deterministic: bool | None) -> Any:
    """Files read side by side; AUTOTUNE parallelism measured faster than one thread per file (0.91-0.95 against
    0.86-0.89 of local tf.data in the same A/B runs)."""
    import tensorflow as tf

    return ds.interleave(reader, cycle_length=cycle_length, block_length=block_length,
                         num_parallel_calls=tf.data.AUTOTUNE, deterministic=deterministic)


def _bridge_names(files: list[str], records: bool, stats: ReadStats | None) -> list[str] | None:
    """Names under which TF's own readers stream HDFS files through tf_bridge (records=True: TFRecord framing
    and CRCs checked on the way, errors naming file and offset); None when some file is not on HDFS or the
    bridge cannot load (then files are staged)."""
    if not all(split_uri(f)[0] in fs.HADOOP_SCHEMES for f in files):
        return None
    bridge = tf_bridge.get()
    return [bridge.name(f, records, stats) for f in files] if bridge else None


def _then(fn: Any, args: list[Any], like: Any) -> Any:
    """An empty dataset shaped like `like` that calls the Python function fn(*args) when it is reached."""
    import tensorflow as tf

    call = tf.data.Dataset.from_tensors(args[0]).map(lambda _: tf.py_function(fn, args, tf.string))
    return call.filter(lambda _: False).flat_map(lambda _: like.take(0))


class _CsvCheck:
    """Checked CSV streamed from HDFS. TF's decode errors name neither file nor line, so TF decodes each file's
    batches of lines with errors ignored, every decoded batch is counted (one py_function per batch, not per
    row), and after the file the count is compared with the lines tf_bridge saw go by. A file that came up short
    had a bad line: it is fetched once more and scanned in Python to name the file and line."""

    def __init__(self, bridge: Any, spec: _CsvSpec, per_batch: int, stage_dir: str | None):
        self.bridge, self.spec, self.per_batch, self.stage_dir = bridge, spec, per_batch, stage_dir
        self._decoded: dict[str, int] = {}
        self._lock = threading.Lock()

    def one_pass(self, name: Any) -> Any:
        return self.bridge.one_pass(name.numpy().decode())

    def decoded(self, name: Any, _: Any) -> Any:
        key = name.numpy().decode()
        with self._lock:
            self._decoded[key] = self._decoded.get(key, 0) + 1
        return name

    def verify(self, name: Any, uri: Any) -> Any:
        key, uri_text = name.numpy().decode(), uri.numpy().decode()
        with self._lock:
            decoded = self._decoded.pop(key, 0)
        done = self.bridge.pass_done(key)
        if done is None:
            raise OSError(f"{uri_text}: TensorFlow had not finished reading the file when it was checked")
        lines, error = done
        if error is not None:  # a failed open or read, which ignore_errors() hid
            raise OSError(error)
        rows = max(lines - self.spec.header, 0)
        if decoded < -(-rows // self.per_batch):
            stager = _Stager(_stage_dir(self.stage_dir), None, "raise", True, None)
            local, _ = stager._download(uri_text)
            stager.explain_csv(uri_text, local, self.spec)
        return name

    def read(self, name: Any, uri: Any) -> Any:
        """One file: its lines in batches, decoded, counted, then the check."""
        import tensorflow as tf

        one = tf.ensure_shape(tf.py_function(self.one_pass, [name], tf.string), [])

        def decode_and_count(lines: Any) -> Any:
            cols = self.spec.decode(lines)
            # counted only once decoded (the empty slice makes it wait for decode_csv); stateful, so tf.data runs
            # it although nothing uses its output
            tf.py_function(self.decoded, [one, cols[0][:0]], tf.string)
            return cols

        batches = self.spec.lines(one).batch(self.per_batch).map(decode_and_count).ignore_errors()
        return batches.concatenate(_then(self.verify, [one, uri], batches))


def _staged(ds: Any, stager: _Stager, stage_fn: Any, explain_fn: Any, reader: Any, cycle_length: int,
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

    def then(fn: Any, local: Any, *more: Any) -> Any:
        return _then(fn, [local, *more], reader(local))

    def read_staged(uri: Any, local: Any, count: Any) -> Any:
        out = reader(local)
        if stager.checked:
            # TF's errors name neither file nor line: read past them and explain a short file afterwards
            out = out.ignore_errors().concatenate(then(explain, local, uri)).take(count)
        return out.concatenate(then(cleanup, local))

    def open_file(uri: Any) -> Any:
        # Staging runs when the file's first element is wanted, on that file's interleave worker, so files are
        # staged side by side: in the interleave function itself it would run on tf.data's single element-making
        # thread, one file after another, and nothing would be read until every file of the cycle was staged.
        staged = tf.data.Dataset.from_tensors(uri).map(
            lambda u: tuple(tf.ensure_shape(t, []) for t in tf.py_function(stage, [u], [tf.string, tf.int64])))
        return staged.flat_map(lambda local, count: read_staged(uri, local, count))

    return _interleave(ds, open_file, cycle_length, block_length, deterministic)


def tfrecord_dataset(
    paths_or_globs: str | Sequence[str],
    *,
    ctx: Any = None,
    num_shards: int | None = None,
    shard_index: int | None = None,
    shuffle_files: bool = False,
    seed: int | None = None,
    compression: str | None = None,
    cycle_length: int = 4,
    block_length: int = 1,
    deterministic: bool | None = None,
    on_corrupt: OnError = "raise",
    verify: bool = True,
    stats: ReadStats | None = None,
    stage_dir: str | None = None,
) -> Any:
    """A tf.data.Dataset of serialized records from TFRecord files, sharded by file for this worker.

    ctx: a tfnode NodeContext (num_shards / shard_index taken from it unless given). compression: None or "GZIP".
    on_corrupt="skip" drops corrupt records (a bad length or truncation loses the rest of that file) and counts them
    in `stats`; verify=False skips the checking pass (TF still fails on corruption, without naming the file).
    """
    import tensorflow as tf

    files = _file_dataset(paths_or_globs, ctx, num_shards, shard_index, shuffle_files, seed)
    names = None
    if all(tf_native(f) for f in files):
        if not verify and on_corrupt == "raise":
            names = [re.sub("^file://", "", f) for f in files]
    elif on_corrupt == "raise" and not compression:
        names = _bridge_names(files, verify, stats)
    if names is not None:  # TF reads the files itself
        def read(f: Any) -> Any:
            return tf.data.TFRecordDataset(f, compression_type=compression or "", buffer_size=1 << 20)

        return _interleave(_names_dataset(names, shuffle_files, seed), read, cycle_length, block_length,
                           deterministic)
    stager = _Stager(_stage_dir(stage_dir), compression, on_corrupt, verify, stats)
    return _staged(_names_dataset(files, shuffle_files, seed), stager, stager.tfrecord, stager.explain_tfrecord,
                   lambda p: tf.data.TFRecordDataset(p, buffer_size=1 << 20), cycle_length, block_length, deterministic)


def csv_dataset(
    paths_or_globs: str | Sequence[str],
    record_defaults: Sequence[Any],
    *,
    header: bool = True,
    select_cols: Sequence[int] | None = None,
    column_names: Sequence[str] | None = None,
    field_delim: str = ",",
    na_value: str = "",
    ctx: Any = None,
    num_shards: int | None = None,
    shard_index: int | None = None,
    shuffle_files: bool = False,
    seed: int | None = None,
    compression: str | None = None,
    cycle_length: int = 4,
    block_length: int = 1,
    deterministic: bool | None = None,
    batch_size: int | None = None,
    on_bad_line: OnError = "raise",
    verify: bool = True,
    stats: ReadStats | None = None,
    stage_dir: str | None = None,
) -> Any:
    """A tf.data.Dataset of CSV rows (tuples, or dicts with column_names) parsed by TF's C++ CSV decoder.

    batch_size: yield batches (columns of shape [n]) parsed after batching, much faster for wide rows. Batches do
    not span files: a file's last batch may be short.

    record_defaults: one per selected column, a tf.DType (value required) or a default value (e.g. 0, 0.0, "").
    on_bad_line="skip" drops lines with a wrong field count, bad quoting or an unparsable value and counts them in
    `stats`.

    Records are one per line, as with Hadoop's TextInputFormat and Spark's CSV reader by default, so files split
    and stream by line: \n or \r\n line ends; RFC 4180 quoting within a line (`"a, b"`, `"say ""hi"" twice"`). A
    quoted field with a newline inside is bad input (the error names the file and the line it starts on; skip
    drops all its lines), as are a quote inside an unquoted field and text after a closing quote.
    """

    spec = _CsvSpec(tuple(record_defaults), header, tuple(select_cols) if select_cols is not None else None,
                    field_delim, na_value)
    if column_names is not None and len(column_names) != len(record_defaults):
        raise ValueError(f"{len(column_names)} column_names for {len(record_defaults)} record_defaults")
    files = _file_dataset(paths_or_globs, ctx, num_shards, shard_index, shuffle_files, seed)

    def read(path: Any) -> Any:
        if batch_size:  # one decode_csv per batch of lines, within the file so that its errors are the file's
            return spec.lines(path).batch(batch_size).map(spec.decode)
        return spec.dataset(path)

    def stage(uri: str) -> tuple[str, int]:
        local, rows = stager.csv(uri, spec)
        return local, -(-rows // batch_size) if batch_size and rows > 0 else rows

    names = None
    if on_bad_line == "raise" and not compression:
        if all(tf_native(f) for f in files):
            names = [re.sub("^file://", "", f) for f in files] if not verify else None
        else:
            names = _bridge_names(files, False, stats)
    if names is not None and verify:  # streamed, each file's decoded batches counted against its lines
        check = _CsvCheck(tf_bridge.get(), spec, batch_size or 1024, stage_dir)
        pairs = _names_dataset(list(zip(names, files, strict=True)), shuffle_files, seed)

        def read_checked(pair: Any) -> Any:
            batches = check.read(pair[0], pair[1])
            return batches if batch_size else batches.unbatch()

        out = _interleave(pairs, read_checked, cycle_length, block_length, deterministic)
    elif names is not None:  # TF reads the files itself
        out = _interleave(_names_dataset(names, shuffle_files, seed), read, cycle_length, block_length, deterministic)
    else:
        stager = _Stager(_stage_dir(stage_dir), compression, on_bad_line, verify, stats)
        out = _staged(_names_dataset(files, shuffle_files, seed), stager, stage,
                      lambda uri, local: stager.explain_csv(uri, local, spec), read, cycle_length, block_length,
                      deterministic)
    if column_names is not None:
        names = list(column_names)
        out = out.map(lambda *cols: dict(zip(names, cols, strict=True)))
    return out


SHM = "/dev/shm"
SHM_MIN_FREE = 2 << 30


def _stage_dir(parent: str | None) -> str:
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
