"""tf.data readers for TFRecord and CSV files on HDFS (or anything else tfoy paths name).

Per-record work (framing, CRC, parsing) always stays in TF's C++ readers; what differs is how bytes reach them,
and one decision (`route`) makes that choice for both readers:

- tf_native: TensorFlow has its own filesystem for the scheme (`file`, `gs`) and opens the files itself. Only for
  unchecked reads: TF's own errors say "corrupted record at <offset>" or "Expect 3 fields but have 2 in record",
  without a file.
- streamed: HDFS files are read by TF's TFRecordDataset / TextLineDataset through tf_bridge's filesystem plugin as
  the bytes arrive. Streamed TFRecords are checked by the plugin as they pass (file and offset named); streamed CSV
  counts decoded batches against the lines the plugin saw (csv_check.CsvCheck).
- staged: GZIP files, the skip modes, checked local files and machines without the plugin: each file is copied
  into a private folder first (staging), counted, read with errors ignored, and explained when it comes up short
  (record_repair, csv_check).

Which files are read, and this worker's share of them: listing.
"""

from __future__ import annotations

import enum
import operator
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, TypedDict, Unpack, get_args

from hdfs_io import csv_check, record_repair, tf_bridge
from hdfs_io.csv_check import CsvCheck, CsvFormatError, CsvSpec
from hdfs_io.listing import HIDDEN_PREFIXES, expand_paths, shard_files, worker_files
from hdfs_io.paths import HADOOP_SCHEMES, split_uri
from hdfs_io.read_stats import OnError, ReadStats
from hdfs_io.staging import Stager, new_stage_dir, staged_dataset
from hdfs_io.tf_pipeline import interleave, names_dataset

__all__ = [
    "HIDDEN_PREFIXES", "CsvFormatError", "OnError", "ReadOptions", "ReadStats", "Route", "Via", "csv_dataset",
    "expand_paths", "route", "shard_files", "tf_native", "tfrecord_dataset",
]


def tf_native(uri: str) -> bool:
    """True when TensorFlow has its own filesystem for this URI's scheme (file; gs). hdfs:// and viewfs:// are
    TF's through hdfs_io's plugin too, but its readers take the checked private names (tf_bridge) instead."""
    import tensorflow as tf

    scheme = split_uri(uri)[0]
    return scheme == "file" or (scheme not in HADOOP_SCHEMES and scheme in tf.io.gfile.get_registered_schemes())


# ---- how bytes reach TF -------------------------------------------------------------------------------------------


class Via(enum.Enum):
    TF_NATIVE = "tf_native"  # TensorFlow's own filesystem opens the files
    STREAMED = "streamed"  # TF reads them from HDFS as the bytes arrive, through tf_bridge's plugin
    STAGED = "staged"  # each file is copied into the staging area first


@dataclass(frozen=True)
class Route:
    """How a reader's files reach TF, and why (for logs and tests)."""

    via: Via
    reason: str
    bridge: Any = None  # tf_bridge's Bridge, when streamed

    def tf_names(self, files: list[str], records: bool, stats: ReadStats | None) -> list[str]:
        """The names TF's readers open: local paths for TF's own filesystem, tf_bridge's private names for streamed
        files (records=True: TFRecord framing and CRCs checked on the way, errors naming file and offset; the
        bytes counted in stats)."""
        if self.via is Via.STREAMED:
            return [self.bridge.name(f, records, stats) for f in files]
        if self.via is Via.TF_NATIVE:
            return [re.sub("^file://", "", f) for f in files]
        raise ValueError("staged files are read from their staged copies")


def route(files: Sequence[str], *, on_error: str, compression: str | None, verify: bool,
          tf_decompresses: bool) -> Route:
    """How `files` reach TF's C++ reader: TF_NATIVE, STREAMED or STAGED, with the reason.

    on_error: the reader's on_corrupt / on_bad_line. tf_decompresses: whether the reader's TF dataset reads
    `compression` itself (TFRecordDataset does; the CSV reader's TextLineDataset does not). tf_bridge's plugin is
    loaded (tf_bridge.get) only when every file is on HDFS and could be streamed."""
    if on_error != "raise":
        return Route(Via.STAGED, f"on_error={on_error!r}: bad records are cut out of a staged copy")
    if all(tf_native(f) for f in files):
        if verify:
            return Route(Via.STAGED, "checked: TensorFlow's own errors name no file, so a staged copy is counted")
        if compression and not tf_decompresses:
            return Route(Via.STAGED, f"{compression}: this reader's TensorFlow dataset does not decompress")
        return Route(Via.TF_NATIVE, "unchecked, and TensorFlow has a filesystem for every file")
    if compression:
        return Route(Via.STAGED, f"{compression}: only uncompressed files are streamed")
    if not all(split_uri(f)[0] in HADOOP_SCHEMES for f in files):
        return Route(Via.STAGED, "not every file is on HDFS, and TensorFlow has no filesystem for some")
    bridge = tf_bridge.get()
    if bridge is None:
        return Route(Via.STAGED, "tf_bridge's plugin could not be loaded (the reason is logged)")
    return Route(Via.STREAMED, "every file is on HDFS and tf_bridge's plugin is loaded", bridge)


# ---- the readers -------------------------------------------------------------------------------------------------


class ReadOptions(TypedDict, total=False):
    """The keywords both readers take: this worker's share of the files, how TF interleaves them, and how their bytes
    are checked. One list, so that the two readers cannot drift apart (docs/hdfs_io.md gives the defaults)."""

    ctx: Any  # a tfnode NodeContext: num_shards / shard_index taken from it unless given
    num_shards: int | None
    shard_index: int | None
    shuffle_files: bool
    seed: int | None
    compression: str | None  # None or "GZIP"
    cycle_length: int
    block_length: int
    deterministic: bool | None
    verify: bool  # False: no checking pass (TF still fails on corruption, without naming the file)
    stats: ReadStats | None  # counts bytes, records and what the skip modes dropped
    stage_dir: str | None


_DEFAULTS: ReadOptions = {
    "ctx": None, "num_shards": None, "shard_index": None, "shuffle_files": False, "seed": None, "compression": None,
    "cycle_length": 4, "block_length": 1, "deterministic": None, "verify": True, "stats": None, "stage_dir": None,
}


class _Reading:
    """One reader's call: its options with defaults filled in, and the steps both readers take with them."""

    def __init__(self, reader: str, options: ReadOptions, on_error: OnError) -> None:
        unknown = sorted(set(options) - set(_DEFAULTS))
        if unknown:
            raise TypeError(f"{reader}() got an unexpected keyword argument {unknown[0]!r} (it takes "
                            f"{', '.join(sorted(_DEFAULTS))} besides its own)")
        self.o: ReadOptions = {**_DEFAULTS, **options}
        # checked here: a value the readers do not know would quietly take another path (a "gzip" file read as
        # plain records reads as corrupt at offset 0, and with on_corrupt="skip" as empty)
        if self.o["compression"] not in (None, "", "GZIP"):
            raise ValueError(f"{reader}(compression={self.o['compression']!r}): None or 'GZIP'")
        if on_error not in get_args(OnError):
            name = "on_bad_line" if reader == "csv_dataset" else "on_corrupt"
            raise ValueError(f"{reader}({name}={on_error!r}): one of {', '.join(map(repr, get_args(OnError)))}")
        self.on_error = on_error

    def files(self, paths_or_globs: str | Sequence[str]) -> list[str]:
        o = self.o
        return worker_files(paths_or_globs, o["ctx"], o["num_shards"], o["shard_index"], o["shuffle_files"],
                            o["seed"])

    def route(self, files: list[str], tf_decompresses: bool) -> Route:
        return route(files, on_error=self.on_error, compression=self.o["compression"], verify=self.o["verify"],
                     tf_decompresses=tf_decompresses)

    def stager(self) -> Stager:
        o = self.o
        return Stager(new_stage_dir(o["stage_dir"]), o["compression"], self.on_error, o["verify"], o["stats"])

    def names(self, items: list[Any]) -> Any:
        """A dataset of file names (or pairs), shuffled per epoch when asked."""
        return names_dataset(items, self.o["shuffle_files"], self.o["seed"])

    def interleave(self, names: Any, read: Any) -> Any:
        o = self.o
        return interleave(names, read, o["cycle_length"], o["block_length"], o["deterministic"])

    def staged(self, files: list[str], stager: Stager, stage: Any, explain: Any, read: Any) -> Any:
        o = self.o
        return staged_dataset(self.names(files), stager, stage, explain, read, o["cycle_length"], o["block_length"],
                              o["deterministic"])


def tfrecord_dataset(paths_or_globs: str | Sequence[str], *, on_corrupt: OnError = "raise",
                     **options: Unpack[ReadOptions]) -> Any:
    """A tf.data.Dataset of serialized records from TFRecord files, sharded by file for this worker.

    on_corrupt="skip" drops corrupt records (a bad length or truncation loses the rest of that file) and counts them
    in `stats`. The other keywords are ReadOptions.
    """
    import tensorflow as tf

    reading = _Reading("tfrecord_dataset", options, on_corrupt)
    files = reading.files(paths_or_globs)
    way = reading.route(files, tf_decompresses=True)
    verify, stats, compression = reading.o["verify"], reading.o["stats"], reading.o["compression"]
    if way.via is Via.STAGED:
        stager = reading.stager()

        def stage(uri: str) -> tuple[str, int]:
            return stager.stage(uri, lambda local, _: record_repair.prepare_staged(uri, local, on_corrupt, verify,
                                                                                   stats))

        return reading.staged(files, stager, stage, record_repair.explain,
                              lambda p: tf.data.TFRecordDataset(p, buffer_size=1 << 20))

    def read(f: Any) -> Any:  # TF reads the files itself
        return tf.data.TFRecordDataset(f, compression_type=compression or "", buffer_size=1 << 20)

    return reading.interleave(reading.names(way.tf_names(files, records=verify, stats=stats)), read)


def _check_select_cols(given: list[Any], defaults: int) -> list[int]:
    """TF's decoder takes select_cols ascending, unique and one per record default; said here with the values.
    Returns them as Python ints (numpy's taken)."""
    try:
        cols = [operator.index(c) for c in given if not isinstance(c, bool)]
    except TypeError:
        cols = []
    if len(cols) != len(given) or any(c < 0 for c in cols):
        raise ValueError(f"select_cols: whole column numbers >= 0, got {given}")
    if cols != sorted(set(cols)):
        raise ValueError(f"select_cols: ascending and without repeats, got {cols}")
    if len(cols) != defaults:
        raise ValueError(f"select_cols: {len(cols)} columns for {defaults} record_defaults (one default each)")
    return cols


def csv_dataset(
    paths_or_globs: str | Sequence[str],
    record_defaults: Sequence[Any],
    *,
    header: bool = True,
    select_cols: Sequence[int] | None = None,
    column_names: Sequence[str] | None = None,
    field_delim: str = ",",
    na_value: str = "",
    batch_size: int | None = None,
    on_bad_line: OnError = "raise",
    **options: Unpack[ReadOptions],
) -> Any:
    """A tf.data.Dataset of CSV rows (tuples, or dicts with column_names) parsed by TF's C++ CSV decoder.

    batch_size: yield batches (columns of shape [n]) parsed after batching, much faster for wide rows. Batches do
    not span files: a file's last batch may be short.

    record_defaults: one per selected column, a tf.DType (value required) or a default value (e.g. 0, 0.0, "").
    on_bad_line="skip" drops lines with a wrong field count, bad quoting or an unparsable value and counts them in
    `stats`. The other keywords are ReadOptions.

    Records are one per line, as with Hadoop's TextInputFormat and Spark's CSV reader by default, so files split
    and stream by line: \n or \r\n line ends; RFC 4180 quoting within a line (`"a, b"`, `"say ""hi"" twice"`). A
    quoted field with a newline inside is bad input (the error names the file and the line it starts on; skip
    drops all its lines), as are a quote inside an unquoted field and text after a closing quote.
    """

    if select_cols is not None:
        select_cols = _check_select_cols(list(select_cols), len(record_defaults))
    spec = CsvSpec(tuple(record_defaults), header, tuple(select_cols) if select_cols is not None else None,
                   field_delim, na_value)
    if column_names is not None and len(column_names) != len(record_defaults):
        raise ValueError(f"{len(column_names)} column_names for {len(record_defaults)} record_defaults")
    reading = _Reading("csv_dataset", options, on_bad_line)
    files = reading.files(paths_or_globs)
    way = reading.route(files, tf_decompresses=False)
    verify, stats = reading.o["verify"], reading.o["stats"]

    def read(path: Any) -> Any:
        if batch_size:  # one decode_csv per batch of lines, within the file so that its errors are the file's
            return spec.lines(path).batch(batch_size).map(spec.decode)
        return spec.dataset(path)

    if way.via is Via.STAGED:
        stager = reading.stager()

        def stage(uri: str) -> tuple[str, int]:
            local, rows = stager.stage(uri, lambda local, lines: csv_check.prepare_staged(
                uri, local, lines, spec, on_bad_line, verify, stats), count_lines=True)
            return local, -(-rows // batch_size) if batch_size and rows > 0 else rows

        out = reading.staged(files, stager, stage, lambda uri, local: csv_check.explain(uri, local, spec), read)
    elif way.via is Via.STREAMED and verify:  # each file's decoded batches counted against its lines
        check = CsvCheck(way.bridge, spec, batch_size or 1024, reading.o["stage_dir"])
        names = way.tf_names(files, records=False, stats=stats)

        def read_checked(pair: Any) -> Any:
            batches = check.read(pair[0], pair[1])
            return batches if batch_size else batches.unbatch()

        out = reading.interleave(reading.names(list(zip(names, files, strict=True))), read_checked)
    else:  # TF reads the files itself
        out = reading.interleave(reading.names(way.tf_names(files, records=False, stats=stats)), read)
    if column_names is not None:
        keys = list(column_names)
        out = out.map(lambda *cols: dict(zip(keys, cols, strict=True)))
    return out
