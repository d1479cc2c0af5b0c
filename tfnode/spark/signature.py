"""A SavedModel signature as TFModel.transform sees it: its input and output tensors (dtype, shape), the Spark type
of each output column, the checks that a DataFrame column can feed an input, and the conversions numpy <-> Arrow.

On the driver these checks name what is wrong before any Spark job runs; on the executors the conversions reshape
inputs to the signature and build nested Arrow lists from outputs without a Python object per row.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np

log = logging.getLogger("tfnode.spark.pipeline")


@dataclass(frozen=True)
class TensorSpec:
    """One input or output of a SavedModel signature, as read from saved_model.pb (no model loaded)."""

    key: str
    dtype: str  # numpy name, e.g. "float32"
    shape: tuple[int, ...] | None  # -1 for unknown dimensions; None when the rank is unknown

    def describe(self) -> str:
        dims = "?" if self.shape is None else "(" + ", ".join("None" if d < 0 else str(d) for d in self.shape) + ")"
        return f"{self.key} {self.dtype} {dims}"


@dataclass(frozen=True)
class Signature:
    export_dir: str
    key: str
    tags: tuple[str, ...]
    inputs: dict[str, TensorSpec]
    outputs: dict[str, TensorSpec]


def resolve_export_dir(export_dir: str | None) -> str:
    """The SavedModel folder: export_dir itself, or the newest complete version under a versioned export base."""
    from hdfs_io import export, fs
    from hdfs_io.paths import absolute_uri

    if not export_dir:
        raise ValueError("TFModel: no export_dir (setExportDir) to load a SavedModel from")
    base = absolute_uri(export_dir)
    if fs.exists(f"{base}/saved_model.pb"):
        return base
    version = export.latest_version(base) if fs.exists(base) else None
    if version is None:
        raise FileNotFoundError(f"TFModel: {base} holds no SavedModel (no saved_model.pb, and no complete version "
                                "<n>/ with _SUCCESS under it)")
    log.info("TFModel: %s is an export base; using its newest complete version %d", base, version)
    return f"{base}/{version}"


def read_signature(export_dir: str, key: str, tags: tuple[str, ...]) -> Signature:
    """The named signature of the meta graph with `tags`, parsed from saved_model.pb; errors name what there is."""
    import tensorflow as tf
    from tensorflow.core.protobuf import saved_model_pb2

    from hdfs_io import fs

    saved = saved_model_pb2.SavedModel()
    saved.ParseFromString(fs.read_bytes(f"{export_dir}/saved_model.pb"))
    graphs = {tuple(sorted(g.meta_info_def.tags)): g for g in saved.meta_graphs}
    graph = graphs.get(tuple(sorted(tags)))
    if graph is None:
        raise ValueError(f"TFModel: {export_dir} has no meta graph tagged {','.join(tags)!r} (setTagSet); its tag "
                         f"sets: {', '.join(','.join(t) for t in graphs) or 'none'}")
    if key not in graph.signature_def:
        raise ValueError(f"TFModel: {export_dir} has no signature {key!r} (setSignatureDefKey); its signatures: "
                         f"{', '.join(sorted(graph.signature_def)) or 'none'}")
    sig = graph.signature_def[key]

    def spec(name: str, info: Any) -> TensorSpec:
        shape = None if info.tensor_shape.unknown_rank else tuple(int(d.size) for d in info.tensor_shape.dim)
        return TensorSpec(name, tf.dtypes.as_dtype(info.dtype).name, shape)

    return Signature(export_dir, key, tags, {n: spec(n, i) for n, i in sig.inputs.items()},
                     {n: spec(n, i) for n, i in sig.outputs.items()})


SPARK_TYPES = {"float32": "float", "float64": "double", "float16": "float", "int8": "int", "int16": "int",
                "int32": "int", "int64": "bigint", "uint8": "int", "uint16": "int", "bool": "boolean",
                "string": "binary"}


def output_type(spec: TensorSpec) -> str:
    """The Spark SQL type of one output per row: a scalar, or arrays nested as deep as the dimensions after the
    batch dimension."""
    base = SPARK_TYPES.get(spec.dtype)
    if base is None:
        raise ValueError(f"TFModel: output {spec.describe()} has a dtype with no Spark column type")
    depth = len(spec.shape) - 1 if spec.shape else 1
    return "array<" * depth + base + ">" * depth


def check_input(column: str, spark_type: Any, spec: TensorSpec) -> None:
    from pyspark.sql import types as T

    base = spark_type
    while isinstance(base, T.ArrayType):
        base = base.elementType
    textual = isinstance(base, T.StringType | T.BinaryType)
    if textual != (spec.dtype == "string"):
        raise ValueError(f"TFModel: column {column!r} is {spark_type.simpleString()}, which cannot feed the "
                         f"signature's input {spec.describe()}")


def as_input(values: np.ndarray, column: str, spec: TensorSpec) -> np.ndarray:
    if spec.dtype != "string":
        values = values.astype(spec.dtype, copy=False)
    if spec.shape and all(d >= 0 for d in spec.shape[1:]):
        want = (len(values), *spec.shape[1:])
        if values.shape != want:
            if values.size != int(np.prod(want)):
                raise ValueError(f"TFModel: column {column!r} holds values of shape {values.shape[1:]}, which "
                                 f"cannot be reshaped to the signature's input {spec.describe()}")
            values = values.reshape(want)
    return values


def arrow_array(values: np.ndarray, kind: Any) -> Any:
    """numpy outputs (batch first) as an Arrow array of `kind`, nested lists for the dimensions after the first."""
    import pyarrow as pa

    if values.ndim <= 1:
        return pa.array(values.tolist() if values.dtype == object else values, type=kind)
    rows, width = values.shape[0], values.shape[1]
    inner = arrow_array(values.reshape(rows * width, *values.shape[2:]), kind.value_type)
    offsets = pa.array(np.arange(0, rows * width + 1, width, dtype=np.int32))
    return pa.ListArray.from_arrays(offsets, inner, type=kind)
