"""Records ↔ numpy columns, both ways the feed carries them: rows of an RDD (lists, tuples, numpy arrays) made into
one array per field, and Arrow record batches of a DataFrame made into the same columns without Python objects.

Why columns: a chunk of a thousand records goes over the wire as a few raw buffers instead of a thousand pickles,
and DataFeed hands TensorFlow the batches it builds from them. Errors name the partition and the field.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from typing import Any

import numpy as np


def _small_int_rows(values: list[Any]) -> np.ndarray | None:
    """Lists of ints all in 0..255 (pixels, tokens of small vocabularies) as uint8 rows, ~5x faster than np.array.

    Sent narrow and widened back to int64 on arrival (`narrow` in the chunk header), so the dtype users see is
    the one np.asarray would give."""
    first = values[0]
    if type(first) is not list or not first or type(first[0]) is not int:
        return None
    width = len(first)
    if not all(type(v) is list and len(v) == width for v in values):
        return None
    try:
        buf = b"".join(map(bytes, values))
    except (TypeError, ValueError):
        return None
    return np.frombuffer(buf, dtype=np.uint8).reshape(len(values), width)


_TEXT = (bytes, bytearray, str)


def _text_column(values: list[Any]) -> np.ndarray | None:
    """bytes (or bytearray, as Hadoop's BytesWritable reaches Python) or str values as an object array of the
    values themselves. Why not numpy's fixed-width S/U arrays: they drop trailing NULs on the way out (b"a\\x00"
    comes back as b"a"), which breaks serialized tf.Examples and raw pixel bytes."""
    kind = type(values[0])
    if kind not in _TEXT or not all(type(v) is kind for v in values):
        return None
    out = np.empty(len(values), dtype=object)
    out[:] = [bytes(v) for v in values] if kind is bytearray else values
    return out


def to_wire(columns: list[np.ndarray]) -> tuple[list[np.ndarray], list[list[int]]]:
    """The arrays a chunk travels as: object columns of bytes/str as fixed-width numpy strings plus each value's
    length appended at the end (the wire sends raw buffers only, never pickles); returns (arrays, [[column,
    index of its lengths], ...]) for from_wire."""
    arrays, exact = list(columns), []
    for j, col in enumerate(columns):
        if col.dtype == object:
            text = len(col) > 0 and isinstance(col[0], str)
            arrays[j] = np.array(col.tolist(), dtype=str if text else bytes)
            exact.append([j, len(arrays)])
            arrays.append(np.fromiter(map(len, col), dtype=np.int64, count=len(col)))
    return arrays, exact


def from_wire(arrays: list[np.ndarray], narrow: list[int], exact: list[list[int]]) -> list[np.ndarray]:
    """The chunk's columns as they were sent: uint8-narrowed ints widened back to int64, text columns as object
    arrays of the exact values (trailing NULs restored from the lengths)."""
    for j in narrow:
        arrays[j] = arrays[j].astype(np.int64)
    if not exact:
        return arrays
    for j, k in exact:
        pad = "\0" if arrays[j].dtype.kind == "U" else b"\0"
        out = np.empty(len(arrays[j]), dtype=object)
        out[:] = [v if len(v) == n else v + pad * (n - len(v))
                  for v, n in zip(arrays[j].tolist(), arrays[k].tolist(), strict=True)]
        arrays[j] = out
    return arrays[:min(k for _, k in exact)]


def records_to_columns(records: list[Any], partition: int) -> tuple[list[np.ndarray], bool, list[int]]:
    """Stacks records into column arrays; returns (columns, tuple_mode, indices of uint8-narrowed int columns).

    A tuple record (e.g. `(features, label)` or a pyspark Row) gives one column per field; anything else (a list,
    an array, a scalar) is one column. Records of different shapes or types raise ValueError naming the partition.
    """
    tuple_mode = isinstance(records[0], tuple)
    if tuple_mode:
        width = len(records[0])
        for i, r in enumerate(records):
            if not isinstance(r, tuple) or len(r) != width:
                raise ValueError(f"partition {partition}: record {i} is {_describe(r)}, expected a {width}-tuple "
                                 f"like record 0")
        fields = [[r[j] for r in records] for j in range(width)]
    else:
        fields = [records]
    columns = []
    narrow = []
    for j, values in enumerate(fields):
        fast = _small_int_rows(values)
        if fast is not None:
            columns.append(fast)
            narrow.append(j)
            continue
        text = _text_column(values)
        if text is not None:
            columns.append(text)
            continue
        try:
            col = np.asarray(values)
        except ValueError as e:
            raise ValueError(f"partition {partition}: {_mismatch(values, j, tuple_mode)}") from e
        if col.dtype.hasobject:
            raise ValueError(f"partition {partition}: {_mismatch(values, j, tuple_mode)}")
        columns.append(col)
    return columns, tuple_mode, narrow


def _describe(value: Any) -> str:
    return f"{type(value).__name__} of shape {np.shape(value)}" if not isinstance(value, tuple) else \
        f"a {len(value)}-tuple"


def _mismatch(values: list[Any], field_index: int, tuple_mode: bool) -> str:
    where = f"field {field_index} of " if tuple_mode else ""
    first = np.shape(values[0])
    for i, v in enumerate(values):
        try:
            shape = np.shape(v)
        except ValueError:
            shape = None
        if shape != first or v is None:
            return (f"{where}record {i} has shape {shape} ({type(v).__name__}), expected {first} like record 0 "
                    "(records must all have the same shape)")
    return f"{where}records cannot be stacked into a numeric array (mixed or unsupported types)"


def columns_to_rows(columns: list[np.ndarray], tuple_mode: bool) -> list[Any]:
    return list(zip(*columns, strict=True)) if tuple_mode else list(columns[0])


Chunk = tuple[dict[str, Any], list[np.ndarray]]  # a chunk's header and its columns, as sent


def record_chunks(records: Iterator[Any], size: int, partition: int) -> Iterator[Chunk]:
    """(chunk header, columns) for every `size` records."""
    while True:
        batch = list(itertools.islice(records, size))
        if not batch:
            return
        columns, tuple_mode, narrow = records_to_columns(batch, partition)
        yield {"op": "chunk", "tuple": tuple_mode, "narrow": narrow}, columns


def arrow_columns(batch: Any, names: list[str], partition: int) -> list[np.ndarray]:
    """numpy columns of an Arrow record batch, without a Python object per value: numbers as they are, lists of
    numbers of one length as 2-D arrays, strings and binaries as object arrays of str/bytes. A null, ragged lists or
    a type with no array form raise ValueError naming the column and the partition."""
    import pyarrow as pa

    out = []
    for name in names:
        col = batch.column(name)
        if col.null_count:
            raise ValueError(f"partition {partition}: column {name!r} has {col.null_count} null value(s)")
        kind = col.type
        if pa.types.is_list(kind) or pa.types.is_large_list(kind) or pa.types.is_fixed_size_list(kind):
            lengths = np.asarray(col.value_lengths())
            width = int(lengths[0]) if len(lengths) else 0
            if len(lengths) and (lengths != width).any():
                raise ValueError(f"partition {partition}: column {name!r} holds lists of different lengths "
                                 f"({width} and {int(lengths[lengths != width][0])})")
            values = col.flatten()
            if not (pa.types.is_integer(values.type) or pa.types.is_floating(values.type)
                    or pa.types.is_boolean(values.type)):
                raise ValueError(f"partition {partition}: column {name!r} is {kind}, not a list of numbers")
            out.append(values.to_numpy(zero_copy_only=False).reshape(len(col), width))
        elif pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_boolean(kind):
            out.append(col.to_numpy(zero_copy_only=False))
        elif (pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_binary(kind)
              or pa.types.is_large_binary(kind)):
            values = np.empty(len(col), dtype=object)  # the exact values: see _text_column
            values[:] = col.to_pylist()
            out.append(values)
        else:
            raise ValueError(f"partition {partition}: column {name!r} is {kind}, which cannot be fed (numbers, "
                             "lists of numbers, strings, binaries)")
    return out


def arrow_chunks(batches: Iterator[Any], names: list[str], size: int,
                 partition: int) -> Iterator[Chunk]:
    """(chunk header, columns) of at most `size` rows from Arrow record batches (a DataFrame's mapInArrow)."""
    for batch in batches:
        for start in range(0, batch.num_rows, size):
            piece = batch.slice(start, size)
            # rows are tuples even of one column, as the Rows of `df.rdd` that TFoS feeds are
            yield {"op": "chunk", "tuple": True, "narrow": []}, arrow_columns(piece, names, partition)


# ---- inference results: TF process → feeding task ------------------------------------------------------------------
_EXACT_SCALARS = {int: np.int64, float: np.float64, bool: np.bool_}


def _exact_array(values: list[Any]) -> np.ndarray | None:
    """values as one numeric array whose tolist() gives them back as they were (same Python type, same value), or
    None. Why so strict: np.asarray([(1, "cat")]) is an array of strings and [(3, 0.9)] one of floats, so the
    label 1 would come back as "1" and 3 as 3.0."""
    kinds = {type(v) for v in values}
    if len(kinds) != 1:
        return None
    kind = kinds.pop()
    try:
        if kind in _EXACT_SCALARS:
            return np.array(values, dtype=_EXACT_SCALARS[kind])
        if issubclass(kind, np.generic) and np.dtype(kind).kind in "biuf":
            return np.array(values, dtype=kind)
        if kind is np.ndarray and len({(v.dtype, v.shape) for v in values}) == 1 and values[0].dtype.kind in "biuf":
            return np.stack(values)
    except (OverflowError, ValueError):  # an int beyond int64
        return None
    return None


def _jsonable(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return value


def results_to_wire(results: Any) -> tuple[dict[str, Any], list[np.ndarray]]:
    """What DataFeed.batch_results sends: (header, arrays). Numbers of one type (or tuples of such columns, the
    usual `(label, prediction)`) travel as raw arrays; anything else as JSON. results_from_wire gives back what
    was passed as TFoS does (tuples stay tuples, an int stays an int), except that numpy values become Python's
    (an array a list), which Spark can make rows of."""
    if isinstance(results, np.ndarray) and not results.dtype.hasobject:
        return {"n": len(results)}, [results]
    results = list(results)
    tuples = bool(results) and all(type(r) is tuple for r in results)
    if tuples and len({len(r) for r in results}) == 1 and results[0]:
        columns = [_exact_array([r[j] for r in results]) for j in range(len(results[0]))]
        if all(c is not None for c in columns):
            return {"n": len(results), "columns": len(columns)}, columns
    elif not tuples and results:
        arr = _exact_array(results)
        if arr is not None:
            return {"n": len(results)}, [arr]
    text = json.dumps([_jsonable(r) for r in results], separators=(",", ":")).encode()
    return {"n": len(results), "json": True, "tuples": tuples}, [np.frombuffer(text, dtype=np.uint8)]


def results_from_wire(header: dict[str, Any], arrays: list[np.ndarray]) -> list[Any]:
    if header.get("json"):
        values = json.loads(bytes(arrays[0]))
        return [tuple(v) for v in values] if header.get("tuples") else values
    if header.get("columns"):
        return list(zip(*(a.tolist() for a in arrays), strict=True))
    return arrays[0].tolist()
