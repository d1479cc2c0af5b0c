"""Checking CSV files as TF's decoder reads them: naming the file and line of a bad record, cutting bad lines out
(on_bad_line="skip"), and counting streamed files' decoded batches against their lines.

TF's own errors say only "Expect 3 fields but have 2 in record", without a file or line. Streamed CSV (CsvCheck)
counts each file's decoded batches against the lines tf_bridge saw go by; a staged file is counted by its newlines
(staging). A file that comes up short is scanned here, in Python, by exactly TF's rules, to name the file and the
line. Good files pay only the count.
"""

from __future__ import annotations

import io
import logging
import os
import threading
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import islice
from typing import Any, NamedTuple, NoReturn

from hdfs_io.errors import HdfsIoError
from hdfs_io.read_stats import OnError, ReadStats
from hdfs_io.staging import Stager, new_stage_dir
from hdfs_io.tf_pipeline import then

log = logging.getLogger("hdfs_io.datasets")  # the readers' logger: one name to configure, as before the split


class CsvFormatError(HdfsIoError, ValueError):
    """A CSV line with the wrong number of fields or a value that does not parse; names file and line."""

    def __init__(self, uri: str, line: int, reason: str):
        super().__init__(f"{uri}:{line}: {reason}")
        self.uri, self.line, self.reason = uri, line, reason


@dataclass(frozen=True)
class CsvSpec:
    """How csv_dataset parses: TF reads the lines and decode_csv parses them; the Python check follows it."""

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


class BadLine(NamedTuple):
    line: int  # 1-based, header included: where the bad record starts
    reason: str
    last: int  # its last line (a record with a newline inside quotes spans several)


class _Row(NamedTuple):
    first: int
    last: int
    fields: list[str]
    problem: str | None  # a quoting error, which TF's decoder rejects too


MAX_QUOTED_LINES = 100  # how far a quoted field left open is followed to tell a quoted newline from a stray quote


def split_csv_line(text: str, delim: str) -> tuple[list[str], str | None, bool]:
    """(fields, what is wrong, whether it ends inside a quoted field) by the rules of TF's decode_csv, which are
    RFC 4180's within a record: a field may be quoted, with the delimiter, newlines and doubled quotes inside; an
    unquoted field may hold no quote, CR or LF (TF skips those where a field starts). The Python check must
    reject exactly what TF rejects, or a bad line goes unnamed ("no bad line was found") and skip mode cannot cut
    it out (tests/unit/test_csv_check_quoting.py compares the two)."""
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
        fields, problem, open_quote = split_csv_line(text, delim)
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
                joined, joined_problem, _ = split_csv_line("\n".join([text, *islice(ahead, span)]), delim)
                if joined_problem is None:
                    for _ in range(span):
                        ahead.popleft()
                    yield _Row(lineno, lineno + span, joined, (
                        f"newline inside a quoted field (the record spans lines {lineno}-{lineno + span}): records "
                        f"must be one per line, as with Hadoop's TextInputFormat"))
                    lineno += span
                    continue
        yield _Row(lineno, lineno, fields, problem)


def find_bad_lines(local: str, spec: CsvSpec) -> list[BadLine]:
    """Python pass over a file TF rejected, to name its bad lines (1-based, header included)."""
    checks = [_checker(d) for d in spec.record_defaults]
    cols = list(spec.select_cols) if spec.select_cols is not None else list(range(len(checks)))
    bad: list[BadLine] = []
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
            bad.append(BadLine(row.first, reason, row.last))
    return bad


def _field_problem(fields: list[str], expected: int | None, cols: list[int], checks: list[tuple[Any, bool]],
                   na_value: str) -> str | None:
    """What TF's decoder would reject in a well-quoted record: its field count, or a value of a selected column."""
    if len(fields) != expected:
        return f"expected {expected} fields, got {len(fields)}"
    for col, (parse, required) in zip(cols, checks, strict=False):
        if col >= len(fields):  # select_cols past the record's end (its width is the first record's)
            return f"column {col}: the record has {len(fields)} fields"
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


# ---- staged files ----------------------------------------------------------------------------------------------


def prepare_staged(uri: str, local: str, lines: int, spec: CsvSpec, on_error: OnError, verify: bool,
                   stats: ReadStats | None) -> int:
    """Number of data lines in the staged copy (`lines` counted while staging), or -1 when the reader need not
    count; skip mode first cuts bad lines out of it."""
    if on_error == "skip":
        cut_bad_lines(uri, local, spec, stats)
        return -1
    return max(lines - spec.header, 0) if verify else -1


def explain(uri: str, local: str, spec: CsvSpec) -> NoReturn:
    """Raises the file's first bad line (TF stopped parsing it early)."""
    bad = find_bad_lines(local, spec)
    if not bad:
        raise CsvFormatError(uri, 0, "TensorFlow rejected the file but no bad line was found")
    raise CsvFormatError(uri, bad[0].line, bad[0].reason)


def cut_bad_lines(uri: str, local: str, spec: CsvSpec, stats: ReadStats | None) -> None:
    """Cuts the lines TF's decoder rejects out of the staged copy, counting them (a good file: one TF pass)."""
    import tensorflow as tf

    try:
        for _ in spec.lines(local).batch(8192).map(spec.decode):
            pass
        return
    except (tf.errors.InvalidArgumentError, tf.errors.DataLossError):
        pass
    bad = find_bad_lines(local, spec)
    drop: set[int] = set()
    for b in bad:
        lines = "line skipped" if b.last == b.line else f"lines {b.line}-{b.last} skipped"
        log.warning("%s:%d: %s (%s)", uri, b.line, b.reason, lines)
        drop.update(range(b.line, b.last + 1))
    stats and stats.add(bad_lines_skipped=len(drop))
    _drop_lines(local, drop)


# ---- streamed files --------------------------------------------------------------------------------------------


class CsvCheck:
    """Checked CSV streamed from HDFS. TF's decode errors name neither file nor line, so TF decodes each file's
    batches of lines with errors ignored, every decoded batch is counted (one py_function per batch, not per
    row), and after the file the count is compared with the lines tf_bridge saw go by. A file that came up short
    had a bad line: it is fetched once more and scanned in Python to name the file and line."""

    def __init__(self, bridge: Any, spec: CsvSpec, per_batch: int, stage_dir: str | None):
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
            stager = Stager(new_stage_dir(self.stage_dir), None, "raise", True, None)
            local, _ = stager.download(uri_text)
            explain(uri_text, local, self.spec)
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
        return batches.concatenate(then(self.verify, [one, uri], batches))
