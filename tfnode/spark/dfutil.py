"""DataFrames ↔ TFRecords of tf.train.Example, as TensorFlowOnSpark's `dfutil` (same names), without a JVM jar.

TFoS writes and reads through the tensorflow-hadoop jar's Hadoop input/output formats. Here each partition writes
its own part file through hdfs_io (hidden temporary + rename: a file is whole or absent), then `_SUCCESS` marks the
folder complete; reading lists the part files (hidden and `_` files skipped, as Hadoop does), checks each record's
framing and checksums (a corrupt record raises naming the file and byte offset) and infers the schema from the
first record, as TFoS does.

    from tfnode import dfutil
    dfutil.saveAsTFRecords(df, "hdfs:///user/me/mnist/tfr")
    df2 = dfutil.loadTFRecords(sc, "hdfs:///user/me/mnist/tfr", binary_features=["image_raw"])
"""

from __future__ import annotations

import logging
import struct
from collections.abc import Callable, Iterable, Iterator
from typing import Any

log = logging.getLogger(__name__)

LOADED_ATTR = "_tfoy_tfrecord_dir"  # set on DataFrames loadTFRecords made (isLoadedDF), not a module-level registry
SUCCESS = "_SUCCESS"


# ---- rows → tf.train.Example --------------------------------------------------------------------------------------
def toTFExample(dtypes: list[tuple[str, str]]) -> Callable[[Iterable[Any]], Iterator[tuple[bytearray, None]]]:  # noqa: N802
    """A mapPartitions function: Rows (with the DataFrame's `df.dtypes`) → `(serialized tf.train.Example, None)`,
    TFoS's shape (what `saveAsNewAPIHadoopFile` with the tensorflow-hadoop jar takes as key and value).

    Integer and boolean columns become int64_list, float/double float_list, string and binary bytes_list; arrays of
    those the same lists. Other types (maps, structs, decimals, dates) are refused, naming the column, as are two
    columns of one name (an Example's features are a map: one would be lost)."""
    names = [name for name, _ in dtypes]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise ValueError(f"column {twice[0]!r} appears {names.count(twice[0])} times; a tf.train.Example has one "
                         "feature of each name (rename with toDF or alias)")
    kinds = {name: _kind(name, dtype) for name, dtype in dtypes}

    def convert(rows: Iterable[Any]) -> Iterator[tuple[bytearray, None]]:
        import tensorflow as tf

        for row in rows:
            features = {}
            for name, kind in kinds.items():
                value = row[name]
                values = [] if value is None else (list(value) if kind.endswith("[]") else [value])
                if any(v is None for v in values):
                    raise ValueError(f"column {name!r}: a null element in {value!r}; tf.train.Example lists hold "
                                     "no nulls (drop or fill them first)")
                base = kind.removesuffix("[]")
                if base == "int":
                    feature = tf.train.Feature(int64_list=tf.train.Int64List(value=[int(v) for v in values]))
                elif base == "float":
                    feature = tf.train.Feature(float_list=tf.train.FloatList(value=[float(v) for v in values]))
                else:
                    data = [v.encode() if isinstance(v, str) else bytes(v) for v in values]
                    feature = tf.train.Feature(bytes_list=tf.train.BytesList(value=data))
                features[name] = feature
            yield bytearray(tf.train.Example(features=tf.train.Features(feature=features)).SerializeToString()), None

    return convert


_SCALARS = {"int": "int", "bigint": "int", "smallint": "int", "tinyint": "int", "boolean": "int",
            "float": "float", "double": "float", "string": "bytes", "binary": "bytes"}


def _kind(name: str, dtype: str) -> str:
    inner = dtype[6:-1] if dtype.startswith("array<") and dtype.endswith(">") else None
    base = _SCALARS.get(inner if inner is not None else dtype)
    if base is None:
        raise TypeError(f"column {name!r}: type {dtype} has no tf.train.Example form (int, float, string, binary "
                        "and arrays of them)")
    return base + ("[]" if inner is not None else "")


# ---- tf.train.Example → rows ----------------------------------------------------------------------------------------
def infer_schema(example: Any, binary_features: list[str] | None = None) -> Any:
    """The Spark schema of a tf.train.Example (TFoS's rule): a list of one value is a scalar, longer lists arrays;
    int64_list → long, float_list → double, bytes_list → string, or binary for the features named binary."""
    from pyspark.sql.types import ArrayType, BinaryType, DoubleType, LongType, StringType, StructField, StructType

    binary = set(binary_features or [])
    fields = []
    for name in sorted(example.features.feature):
        feature = example.features.feature[name]
        kind = feature.WhichOneof("kind")
        values = getattr(feature, kind).value if kind else []
        if kind == "int64_list":
            base = LongType()
        elif kind == "float_list":
            base = DoubleType()
        else:
            base = BinaryType() if name in binary else StringType()
        fields.append(StructField(name, ArrayType(base) if len(values) > 1 else base, True))
    return StructType(fields)


def fromTFExample(records: Iterable[Any], binary_features: list[str] | None = None,  # noqa: N802 - TFoS
                  schema: Any = None) -> Iterator[Any]:
    """Serialized tf.train.Examples → Rows with the fields of `schema` (inferred from the first when None). A record
    is the bytes, or TFoS's `(bytes, None)` pair as `newAPIHadoopFile` with the tensorflow-hadoop jar gives it. A
    record that does not fit the schema raises, naming the record and the feature (nothing is dropped or cut)."""
    layout = None if schema is None else _layout(schema, set(binary_features or []))
    for i, raw in enumerate(records):
        example = _parse_example(bytes(raw[0] if isinstance(raw, tuple) else raw), f"record {i}")
        if layout is None:
            layout = _layout(infer_schema(example, binary_features), set(binary_features or []))
        yield _to_row(example, layout, f"record {i}")


def _parse_example(data: bytes, where: str) -> Any:
    import tensorflow as tf
    from google.protobuf.message import DecodeError

    try:
        return tf.train.Example.FromString(data)
    except DecodeError as e:
        raise ValueError(f"{where}: not a tf.train.Example ({e})") from None


_KIND_OF = {"LongType": "int64_list", "DoubleType": "float_list", "StringType": "bytes_list",
            "BinaryType": "bytes_list"}


Layout = list[tuple[str, bool, str, bool, str]]  # per field: name, is an array, its kind, decoded, its type


def _layout(schema: Any, binary: set[str]) -> Layout:
    """What _to_row checks each record against, worked out once per schema rather than once per record; a given
    schema with a type an Example cannot hold is refused here, naming the field."""
    from pyspark.sql.types import ArrayType

    layout = []
    for field in schema.fields:
        is_array = isinstance(field.dataType, ArrayType)
        element = type(field.dataType.elementType if is_array else field.dataType).__name__
        if element not in _KIND_OF:
            raise TypeError(f"schema: field {field.name!r} is {field.dataType.simpleString()}; a tf.train.Example "
                            "holds long, double, string and binary values (and arrays of them)")
        decoded = element == "StringType" and field.name not in binary
        layout.append((field.name, is_array, _KIND_OF[element], decoded, field.dataType.simpleString()))
    return layout


def _to_row(example: Any, layout: Layout, where: str) -> Any:
    """One Example as a Row of the schema. The schema is the first record's (TFoS's rule), so a later record may
    differ: a scalar that became a list, another value type, a feature the first lacked. Each raises naming the
    record: a list cut to its first value, or a feature left out, would be data lost without a word."""
    from pyspark.sql import Row

    features = example.features.feature
    names = [name for name, *_ in layout]
    extra = sorted(set(features) - set(names))
    if extra:
        raise ValueError(f"{where}: feature {extra[0]!r} is not in the schema inferred from the first record "
                         f"({', '.join(names)})")
    row = {}
    for name, is_array, expected, decoded, type_string in layout:
        feature = features[name] if name in features else None
        kind = feature.WhichOneof("kind") if feature is not None else None
        values = list(getattr(feature, kind).value) if kind else []
        if kind is not None and values and kind != expected:
            raise ValueError(f"{where}: feature {name!r} is a {kind}, the schema (from the first record) has "
                             f"{type_string}")
        if not is_array and len(values) > 1:
            raise ValueError(f"{where}: feature {name!r} has {len(values)} values where the schema has one (a "
                             "first record's one value reads as a scalar); pass loadTFRecords a schema= with an "
                             "array type for it")
        if kind == "bytes_list" and decoded:
            try:
                values = [v.decode("utf-8") for v in values]
            except UnicodeDecodeError:
                raise ValueError(f"{where}: feature {name!r} is not UTF-8 text; name it in binary_features") from None
        row[name] = values if is_array else (values[0] if values else None)
    return Row(**row)


# ---- files ----------------------------------------------------------------------------------------------------------
def saveAsTFRecords(df: Any, output_dir: str) -> int:  # noqa: N802 - TFoS's name
    """Writes `df` as TFRecord part files (one per partition) under output_dir, then `_SUCCESS`; returns the
    number of records. An existing folder is refused (Hadoop's rule for output folders). The folder appears whole:
    written under a hidden name beside it and renamed into place, so a failed job leaves nothing there."""
    from hdfs_io import fs
    from hdfs_io.paths import absolute_uri
    from hdfs_io.publish import publish

    out = absolute_uri(output_dir)
    if fs.exists(out):
        raise FileExistsError(f"{out}: already exists (saveAsTFRecords writes a new folder)")
    parent = out.rstrip("/").rsplit("/", 1)[0]
    convert = toTFExample(df.dtypes)
    fs.makedirs(parent)
    with publish(out) as pending:  # a failed job leaves no folder of some parts (which would read as all of them)
        folder = pending.tmp

        def write(index: int, rows: Iterable[Any]) -> Iterator[int]:
            from hdfs_io.records import TFRecordWriter

            with TFRecordWriter(f"{folder}/part-r-{index:05d}") as writer:
                for record, _ in convert(rows):
                    writer.write(bytes(record))
            yield writer.count

        fs.makedirs(folder)
        total = sum(df.rdd.mapPartitionsWithIndex(write).collect())
        fs.write_bytes(f"{folder}/{SUCCESS}", b"")
    return total


def tfrecord_files(input_dir: str) -> list[str]:
    """The data files of a folder, sorted: Hadoop's hidden files (`_SUCCESS`, `.x.tmp`) left out."""
    from hdfs_io import fs
    from hdfs_io.paths import absolute_uri

    folder = absolute_uri(input_dir)
    if not fs.isdir(folder):
        if fs.exists(folder):
            raise NotADirectoryError(f"{folder}: a file; give the folder of part files it is in")
        raise FileNotFoundError(f"{folder}: no such folder")
    return sorted(f.uri for f in fs.ls(folder) if not f.is_dir and not f.uri.rsplit("/", 1)[1].startswith(("_", ".")))


def read_records(uri: str) -> Iterator[bytes]:
    """The records of one TFRecord file, each checked (framing and data CRC); corruption raises naming the file and
    the record's byte offset."""
    for _, data in _records_at(uri):
        yield data


def _records_at(uri: str) -> Iterator[tuple[int, bytes]]:
    """(byte offset, record) of one TFRecord file, as read_records."""
    from hdfs_io import fs
    from hdfs_io.records import HEADER, CorruptRecordError, masked_crc32c, scan_frames

    buf = fs.read_bytes(uri)
    frames, error = scan_frames(buf, uri)
    for frame in frames:
        start = frame.offset + HEADER
        data = buf[start:start + frame.length]
        (stored,) = struct.unpack_from("<I", buf, start + frame.length)
        if masked_crc32c(data) != stored:
            raise CorruptRecordError(uri, frame.offset, "data checksum mismatch")
        yield frame.offset, data
    if error is not None:
        raise error


def loadTFRecords(sc: Any, input_dir: str, binary_features: list[str] | None = None,  # noqa: N802 - TFoS
                  schema: Any = None) -> Any:
    """A DataFrame of the tf.train.Examples under input_dir (one Spark partition per file), its schema inferred
    from the first record (TFoS's rule) unless given; strings are bytes_list features not named in
    binary_features. `schema` (a StructType; tfoy's addition) is for features of varying length whose first
    record has one value."""
    from pyspark.sql import SparkSession

    files = tfrecord_files(input_dir)
    if not files:
        raise FileNotFoundError(f"{input_dir}: no TFRecord files")
    if schema is None:
        first = next(((f, offset, r) for f in files for offset, r in _records_at(f)), None)
        if first is None:
            raise ValueError(f"{input_dir}: the TFRecord files hold no record to infer a schema from")
        name, offset, data = first
        schema = infer_schema(_parse_example(data, f"{name}: record at byte {offset}"), binary_features)
    features = list(binary_features or [])
    unknown = [f for f in features if f not in schema.names]
    if unknown:
        raise ValueError(f"binary_features: {unknown[0]!r} is not a feature of the schema "
                         f"({', '.join(schema.names)})")
    layout = _layout(schema, set(features))  # on the driver: a given schema's bad type is named before any job
    rows = sc.parallelize(files, len(files)).flatMap(lambda f: _file_rows(f, layout))
    df = SparkSession.builder.getOrCreate().createDataFrame(rows, schema)
    setattr(df, LOADED_ATTR, input_dir)
    return df


def _file_rows(uri: str, layout: Layout) -> Iterator[Any]:
    for offset, data in _records_at(uri):
        where = f"{uri}: record at byte {offset}"
        yield _to_row(_parse_example(data, where), layout, where)


def isLoadedDF(df: Any) -> bool:  # noqa: N802 - TFoS's name
    """True for a DataFrame loadTFRecords made (TFoS uses this to feed the files instead of the rows)."""
    return getattr(df, LOADED_ATTR, None) is not None
