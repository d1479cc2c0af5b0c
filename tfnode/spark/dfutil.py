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
    those the same lists. Other types (maps, structs, decimals, dates) are refused, naming the column."""
    kinds = {name: _kind(name, dtype) for name, dtype in dtypes}

    def convert(rows: Iterable[Any]) -> Iterator[tuple[bytearray, None]]:
        import tensorflow as tf

        for row in rows:
            features = {}
            for name, kind in kinds.items():
                value = row[name]
                values = [] if value is None else (list(value) if kind.endswith("[]") else [value])
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
    is the bytes, or TFoS's `(bytes, None)` pair as `newAPIHadoopFile` with the tensorflow-hadoop jar gives it."""
    import tensorflow as tf
    from pyspark.sql import Row
    from pyspark.sql.types import ArrayType, BinaryType

    binary = set(binary_features or [])
    for raw in records:
        example = tf.train.Example.FromString(bytes(raw[0] if isinstance(raw, tuple) else raw))
        if schema is None:
            schema = infer_schema(example, binary_features)
        row = {}
        for field in schema.fields:
            feature = example.features.feature[field.name] if field.name in example.features.feature else None
            kind = feature.WhichOneof("kind") if feature is not None else None
            values = list(getattr(feature, kind).value) if kind else []
            is_binary = field.name in binary or isinstance(
                field.dataType.elementType if isinstance(field.dataType, ArrayType) else field.dataType, BinaryType)
            if kind == "bytes_list" and not is_binary:
                values = [v.decode("utf-8") for v in values]
            if isinstance(field.dataType, ArrayType):
                row[field.name] = values
            else:
                row[field.name] = values[0] if values else None
        yield Row(**row)


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
    convert = toTFExample(df.dtypes)
    fs.makedirs(out.rstrip("/").rsplit("/", 1)[0])
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
        raise FileNotFoundError(f"{folder}: no such folder")
    return sorted(f.uri for f in fs.ls(folder) if not f.is_dir and not f.uri.rsplit("/", 1)[1].startswith(("_", ".")))


def read_records(uri: str) -> Iterator[bytes]:
    """The records of one TFRecord file, each checked (framing and data CRC); corruption raises naming the file and
    the record's byte offset."""
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
        yield data
    if error is not None:
        raise error


def loadTFRecords(sc: Any, input_dir: str, binary_features: list[str] | None = None) -> Any:  # noqa: N802 - TFoS
    """A DataFrame of the tf.train.Examples under input_dir (one Spark partition per file), its schema inferred
    from the first record; strings are bytes_list features not named in binary_features."""
    import tensorflow as tf
    from pyspark.sql import SparkSession

    files = tfrecord_files(input_dir)
    if not files:
        raise FileNotFoundError(f"{input_dir}: no TFRecord files")
    first = next((r for f in files for r in read_records(f)), None)
    if first is None:
        raise ValueError(f"{input_dir}: the TFRecord files hold no record to infer a schema from")
    schema = infer_schema(tf.train.Example.FromString(first), binary_features)
    features = list(binary_features or [])
    rows = sc.parallelize(files, len(files)).flatMap(lambda f: fromTFExample(read_records(f), features, schema))
    df = SparkSession.builder.getOrCreate().createDataFrame(rows, schema)
    setattr(df, LOADED_ATTR, input_dir)
    return df


def isLoadedDF(df: Any) -> bool:  # noqa: N802 - TFoS's name
    """True for a DataFrame loadTFRecords made (TFoS uses this to feed the files instead of the rows)."""
    return getattr(df, LOADED_ATTR, None) is not None
