"""TFoS's Spark ML pipeline (`tensorflowonspark.pipeline`): TFEstimator and TFModel, with its Params and setters.

`TFEstimator(train_fn, tf_args).fit(df)` starts a Spark-mode TF cluster (`TFCluster.run`, InputMode.SPARK) running
`train_fn(args, ctx)` and feeds it the DataFrame's mapped columns over Arrow (`cluster.train(df)`); `args` is
`tf_args` merged with the Params (`args.batch_size`, `args.export_dir`, …), as in TFoS. It returns a `TFModel`
carrying the shared Params. `TFModel.transform(df)` runs batched inference from the SavedModel at `export_dir` in
each executor's Python worker, Arrow in and Arrow out (`mapInArrow`: no Python object per row); the model is loaded
once per worker process and kept for later tasks.

Where tfoy differs from TFoS 2.2.5, and why:
- transform keeps the DataFrame's own columns and appends the mapped outputs (Spark ML's convention, so a
  prediction stays beside its label); TFoS returned only the outputs, through a pickled RDD and a
  schema-inferring `createDataFrame`. `.select(*output_columns)` gives TFoS's shape.
- everything a user can get wrong is checked on the driver before any Spark job: mapped columns the DataFrame
  lacks, a column type that cannot feed a signature input (strings into a float tensor), a signature without the
  mapped inputs or outputs; each message names what there is.
- `export_dir` may be a versioned export base (`hdfs_io.export`, TF Serving's `<base>/<n>`): the newest complete
  version is used.
- TFModel saves and loads (`DefaultParamsWritable`), also inside a fitted `PipelineModel`; TFEstimator does not
  (its train_fn is code, not a Param).
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import logging
import types
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
from pyspark.ml import Estimator, Model
from pyspark.ml.param import Param, Params, TypeConverters
from pyspark.ml.util import DefaultParamsReadable, DefaultParamsReader, DefaultParamsWritable, DefaultParamsWriter

from tfnode.spark.cluster import InputMode, check_feedable, feed_columns

log = logging.getLogger(__name__)


def _to_dict(value: Any) -> dict:
    if isinstance(value, dict):
        return value
    raise TypeError(f"expected a dict (column -> tensor or tensor -> column), got {type(value).__name__}: {value!r}")


def _mixin(name: str, accessor: str, doc: str, converter: Any) -> type:
    """A TFoS `Has<Accessor>` Params mixin: the Param `name` with set<Accessor>/get<Accessor>."""
    def setter(self: Params, value: Any) -> Params:
        return self._set(**{name: value})

    def getter(self: Params) -> Any:
        return self.getOrDefault(name)

    body = {name: Param(Params._dummy(), name, doc, typeConverter=converter),
            f"set{accessor}": setter, f"get{accessor}": getter}
    return types.new_class(f"Has{accessor}", (Params,), exec_body=lambda ns: ns.update(body))


HasBatchSize = _mixin("batch_size", "BatchSize", "Number of records per batch", TypeConverters.toInt)
HasClusterSize = _mixin("cluster_size", "ClusterSize", "Number of nodes in the cluster", TypeConverters.toInt)
HasEpochs = _mixin("epochs", "Epochs", "Number of epochs to train", TypeConverters.toInt)
HasGraceSecs = _mixin("grace_secs", "GraceSecs", "Seconds to wait after feeding before stopping ps nodes",
                      TypeConverters.toInt)
HasInputMapping = _mixin("input_mapping", "InputMapping", "Mapping of input DataFrame column to input tensor",
                         _to_dict)
HasMasterNode = _mixin("master_node", "MasterNode", "Job name of the master/chief worker node",
                       TypeConverters.toString)
HasModelDir = _mixin("model_dir", "ModelDir", "Path to save/load model checkpoints", TypeConverters.toString)
HasNumPS = _mixin("num_ps", "NumPS", "Number of PS nodes in the cluster", TypeConverters.toInt)
HasDriverPSNodes = _mixin("driver_ps_nodes", "DriverPSNodes", "Run PS nodes on the driver (not supported)",
                          TypeConverters.toBoolean)
HasOutputMapping = _mixin("output_mapping", "OutputMapping", "Mapping of output tensor to output DataFrame column",
                          _to_dict)
HasProtocol = _mixin("protocol", "Protocol", "Network protocol for TensorFlow (grpc)", TypeConverters.toString)
HasReaders = _mixin("readers", "Readers", "Number of reader/enqueue threads (unused on TF 2)", TypeConverters.toInt)
HasSteps = _mixin("steps", "Steps", "Maximum number of steps to train", TypeConverters.toInt)
HasTensorboard = _mixin("tensorboard", "Tensorboard", "Launch a TensorBoard process", TypeConverters.toBoolean)
HasTFRecordDir = _mixin("tfrecord_dir", "TFRecordDir", "Path to export a DataFrame as TFRecords",
                        TypeConverters.toString)
HasExportDir = _mixin("export_dir", "ExportDir", "Directory of the exported SavedModel (or a versioned export base)",
                      TypeConverters.toString)
HasSignatureDefKey = _mixin("signature_def_key", "SignatureDefKey", "Identifier of a SavedModel signature",
                            TypeConverters.toString)
HasTagSet = _mixin("tag_set", "TagSet", "Comma-delimited tags identifying a SavedModel meta graph",
                   TypeConverters.toString)
_HasInputModeParam = _mixin("input_mode", "InputMode", "Input data feeding mode (1=SPARK)", TypeConverters.toInt)


class HasInputMode(_HasInputModeParam):
    def setInputMode(self, value: int) -> Params:  # noqa: N802 - TFoS's name
        """Only InputMode.SPARK: fit feeds the DataFrame (TFoS 2.x refuses TENSORFLOW here too)."""
        if value != InputMode.SPARK:
            raise ValueError(f"setInputMode({value!r}): TFEstimator feeds its DataFrame (InputMode.SPARK = 1); for "
                             "nodes reading their own input use TFCluster.run(..., input_mode=InputMode.TENSORFLOW)")
        return self._set(input_mode=value)


class Namespace(types.SimpleNamespace):
    """TFoS's args object: built from a dict, an argparse.Namespace, another Namespace, or an argv list (`argv`).

    `"key" in args` tests for an attribute, as TFoS's train functions do (`'num_gpus' in args`)."""

    argv: list[str] | None = None

    def __init__(self, args: Any = None) -> None:
        super().__init__()
        if isinstance(args, list):
            self.argv = args
        elif isinstance(args, dict):
            self.__dict__.update(args)
        elif isinstance(args, argparse.Namespace | types.SimpleNamespace):
            self.__dict__.update(vars(args))
        elif args is not None:
            raise TypeError(f"tf_args: expected a dict, an argparse.Namespace or an argv list, got "
                            f"{type(args).__name__}")

    def __contains__(self, key: str) -> bool:
        return key in self.__dict__

    def __iter__(self) -> Iterator[str]:
        return iter(self.argv if self.argv is not None else list(self.__dict__))


class TFParams(Params):
    """tf_args (namespace style) beside Spark ML Params; `merge_args_params` is what train_fn receives."""

    args: Namespace = Namespace()

    def merge_args_params(self) -> Namespace:
        merged = Namespace(dict(vars(self.args)))
        for p in self.params:
            setattr(merged, p.name, self.getOrDefault(p.name) if self.isDefined(p) else None)
        return merged


class TFEstimator(Estimator, TFParams, HasInputMapping, HasClusterSize, HasNumPS, HasDriverPSNodes, HasInputMode,
                  HasMasterNode, HasProtocol, HasGraceSecs, HasTensorboard, HasModelDir, HasExportDir,
                  HasTFRecordDir, HasBatchSize, HasEpochs, HasReaders, HasSteps):
    """Spark ML Estimator: `fit(df)` trains with `train_fn(args, ctx)` on a Spark-mode TF cluster fed the
    DataFrame's `input_mapping` columns (sorted by column name, as DataFeed(input_mapping=…) maps them; all columns
    when the mapping is empty), `epochs` times. train_fn exports the model itself (e.g.
    `compat.export_saved_model(model, args.export_dir, ctx.is_chief)`); `export_fn` was TF 1.x only."""

    def __init__(self, train_fn: Any, tf_args: Any, export_fn: Any = None) -> None:
        super().__init__()
        if export_fn is not None:
            raise ValueError("TFEstimator(export_fn=...) is TF 1.x only (TFoS 2.x raises too, after training): export "
                             "from train_fn, e.g. compat.export_saved_model(model, args.export_dir, ctx.is_chief)")
        self.train_fn = train_fn
        self.args = Namespace(tf_args)
        self._setDefault(input_mapping={}, cluster_size=1, num_ps=0, driver_ps_nodes=False,
                         input_mode=InputMode.SPARK, master_node="chief", protocol="grpc", tensorboard=False,
                         model_dir=None, export_dir=None, tfrecord_dir=None, batch_size=100, epochs=1, readers=1,
                         steps=1000, grace_secs=30)

    def _fit(self, dataset: Any) -> TFModel:
        from tfnode.spark import cluster as spark

        args = self.merge_args_params()
        mapping = self.getInputMapping()
        columns = feed_columns(dataset, mapping)
        check_feedable(dataset, columns)
        if args.protocol != "grpc":
            log.warning("protocol %r: TensorFlow 2 talks grpc; the setting is ignored", args.protocol)
        log.info("TFEstimator.fit: feeding columns %s to %d nodes, %d epoch(s)", columns, args.cluster_size,
                 args.epochs)
        cluster = spark.run(dataset.sparkSession.sparkContext, self.train_fn,
                            self.args.argv if self.args.argv is not None else args, args.cluster_size, args.num_ps,
                            args.tensorboard, InputMode.SPARK, master_node=args.master_node,
                            driver_ps_nodes=args.driver_ps_nodes)
        try:
            cluster.train(dataset, args.epochs, input_mapping=mapping or None)
        except BaseException:
            with contextlib.suppress(Exception):  # the training error is the one to raise
                cluster.shutdown(timeout=60)
            raise
        cluster.shutdown(grace_secs=args.grace_secs)
        return self._copyValues(TFModel(self.args))


# ---- TFModel -----------------------------------------------------------------------------------------------------
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


_SPARK_TYPES = {"float32": "float", "float64": "double", "float16": "float", "int8": "int", "int16": "int",
                "int32": "int", "int64": "bigint", "uint8": "int", "uint16": "int", "bool": "boolean",
                "string": "binary"}


def _output_type(spec: TensorSpec) -> str:
    """The Spark SQL type of one output per row: a scalar, or arrays nested as deep as the dimensions after the
    batch dimension."""
    base = _SPARK_TYPES.get(spec.dtype)
    if base is None:
        raise ValueError(f"TFModel: output {spec.describe()} has a dtype with no Spark column type")
    depth = len(spec.shape) - 1 if spec.shape else 1
    return "array<" * depth + base + ">" * depth


def _check_input(column: str, spark_type: Any, spec: TensorSpec) -> None:
    from pyspark.sql import types as T

    base = spark_type
    while isinstance(base, T.ArrayType):
        base = base.elementType
    textual = isinstance(base, T.StringType | T.BinaryType)
    if textual != (spec.dtype == "string"):
        raise ValueError(f"TFModel: column {column!r} is {spark_type.simpleString()}, which cannot feed the "
                         f"signature's input {spec.describe()}")


@dataclass(frozen=True)
class _Plan:
    """What each transform task needs (picklable): where the model is, which columns feed which inputs."""

    export_dir: str
    signature_key: str
    tags: tuple[str, ...]
    inputs: tuple[tuple[str, TensorSpec], ...]  # (column, input spec), columns sorted as TFoS orders them
    outputs: tuple[tuple[str, str, str], ...]  # (tensor, column, Spark type), tensors sorted
    batch_size: int


@functools.lru_cache(maxsize=2)
def _loaded(export_dir: str, tags: tuple[str, ...], key: str) -> tuple[Any, Any]:
    """One loaded SavedModel per Python worker process (Spark reuses workers, so later tasks find it here)."""
    import tensorflow as tf

    import hdfs_io  # noqa: F401 - registers hdfs:// and viewfs:// with TensorFlow

    log.info("TFModel: loading %s (signature %s)", export_dir, key)
    model = tf.saved_model.load(export_dir, tags=list(tags))
    return model, model.signatures[key]  # the model object keeps the signature's variables alive


def _as_input(values: np.ndarray, column: str, spec: TensorSpec) -> np.ndarray:
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


def _arrow_array(values: np.ndarray, kind: Any) -> Any:
    """numpy outputs (batch first) as an Arrow array of `kind`, nested lists for the dimensions after the first."""
    import pyarrow as pa

    if values.ndim <= 1:
        return pa.array(values.tolist() if values.dtype == object else values, type=kind)
    rows, width = values.shape[0], values.shape[1]
    inner = _arrow_array(values.reshape(rows * width, *values.shape[2:]), kind.value_type)
    offsets = pa.array(np.arange(0, rows * width + 1, width, dtype=np.int32))
    return pa.ListArray.from_arrays(offsets, inner, type=kind)


def _transform_batches(plan: _Plan, schema_json: str, batches: Iterator[Any]) -> Iterator[Any]:
    """mapInArrow: each Arrow batch with the model's outputs appended as columns."""
    import pyarrow as pa
    import tensorflow as tf
    from pyspark import TaskContext
    from pyspark.sql.pandas.types import to_arrow_schema
    from pyspark.sql.types import StructType

    from tfnode.spark.columns import arrow_columns

    out_schema = to_arrow_schema(StructType.fromJson(json.loads(schema_json)))
    kinds = [out_schema.field(column).type for _, column, _ in plan.outputs]
    _, predict = _loaded(plan.export_dir, plan.tags, plan.signature_key)
    partition = TaskContext.get().partitionId()
    columns = [c for c, _ in plan.inputs]
    for batch in batches:
        values = arrow_columns(batch, columns, partition)
        results: list[list[np.ndarray]] = [[] for _ in plan.outputs]
        for start in range(0, batch.num_rows, plan.batch_size):
            feed = {spec.key: tf.constant(_as_input(v[start:start + plan.batch_size], column, spec))
                    for (column, spec), v in zip(plan.inputs, values, strict=True)}
            predicted = predict(**feed)
            for i, (tensor, _, _) in enumerate(plan.outputs):
                results[i].append(predicted[tensor].numpy())
        arrays = [_arrow_array(np.concatenate(r) if r else np.empty((0,)), kind) for r, kind in zip(
            results, kinds, strict=True)]
        yield pa.RecordBatch.from_arrays([*batch.columns, *arrays], schema=out_schema)


class _TFModelWriter(DefaultParamsWriter):
    """Params as DefaultParamsWriter writes them, plus tf_args (JSON) so `TFModel.load` restores them too."""

    def saveImpl(self, path: str) -> None:  # noqa: N802 - Spark's name
        args = self.instance.args
        saved = {"argv": args.argv} if args.argv is not None else dict(vars(args))
        for name, value in saved.items():
            try:
                json.dumps(value)
            except TypeError as e:
                raise TypeError(f"TFModel.save: tf_args[{name!r}] is {type(value).__name__}, which JSON cannot hold "
                                "(save needs tf_args of strings, numbers, lists and dicts)") from e
        DefaultParamsWriter.saveMetadata(self.instance, path, self.sparkSession, extraMetadata={"tf_args": saved})


class _TFModelReader(DefaultParamsReader):
    def load(self, path: str) -> TFModel:
        metadata = DefaultParamsReader.loadMetadata(path, self.sparkSession)
        saved = metadata.get("tf_args") or {}
        instance = TFModel(saved["argv"] if "argv" in saved else saved)
        instance._resetUid(metadata["uid"])
        DefaultParamsReader.getAndSetParams(instance, metadata)
        return instance


class TFModel(Model, TFParams, HasInputMapping, HasOutputMapping, HasBatchSize, HasModelDir, HasExportDir,
              HasSignatureDefKey, HasTagSet, DefaultParamsReadable, DefaultParamsWritable):
    """Spark ML Model backed by a SavedModel on HDFS: `transform(df)` appends one column per `output_mapping`
    entry ({output tensor: column}), computed from the `input_mapping` columns ({column: input tensor}) in batches
    of `batch_size`; inputs are cast and reshaped to the signature (Spark holds flat arrays)."""

    def __init__(self, tf_args: Any = None) -> None:
        super().__init__()
        self.args = Namespace(tf_args)
        self._setDefault(input_mapping={}, output_mapping={}, batch_size=100, model_dir=None, export_dir=None,
                         signature_def_key="serving_default", tag_set="serve")

    def write(self) -> _TFModelWriter:
        return _TFModelWriter(self)

    @classmethod
    def read(cls) -> _TFModelReader:
        return _TFModelReader(cls)

    def plan(self, dataset: Any) -> tuple[_Plan, Any]:
        """Checks the mappings against the DataFrame and the SavedModel's signature (on the driver, before any
        Spark job) and returns what the tasks need and the output schema."""
        from pyspark.sql.types import StructType

        inputs, outputs = self.getInputMapping(), self.getOutputMapping()
        if not inputs or not outputs:
            raise ValueError("TFModel: setInputMapping({column: input tensor}) and setOutputMapping({output tensor: "
                             "column}) are both needed")
        columns = feed_columns(dataset, inputs)
        check_feedable(dataset, columns)
        tags = tuple(t.strip() for t in (self.getTagSet() or "serve").split(",") if t.strip())
        sig = read_signature(resolve_export_dir(self.getExportDir()), self.getSignatureDefKey() or "serving_default",
                             tags)
        lacking = [t for t in inputs.values() if t.removesuffix(":0") not in sig.inputs]
        if lacking:
            raise ValueError(f"TFModel: signature {sig.key!r} of {sig.export_dir} has no input "
                             f"{', '.join(map(repr, lacking))}; its inputs: "
                             f"{', '.join(s.describe() for s in sig.inputs.values())}")
        unfed = sorted(set(sig.inputs) - {t.removesuffix(":0") for t in inputs.values()})
        if unfed:
            raise ValueError(f"TFModel: signature {sig.key!r} of {sig.export_dir} also needs input(s) "
                             f"{', '.join(unfed)}; map a column to each (setInputMapping)")
        missing = [t for t in outputs if t.removesuffix(":0") not in sig.outputs]
        if missing:
            raise ValueError(f"TFModel: signature {sig.key!r} of {sig.export_dir} has no output "
                             f"{', '.join(map(repr, missing))}; its outputs: "
                             f"{', '.join(s.describe() for s in sig.outputs.values())}")
        clash = [c for c in outputs.values() if c in dataset.columns]
        if clash:
            raise ValueError(f"TFModel: output column(s) {', '.join(map(repr, clash))} already in the DataFrame "
                             f"(its columns: {', '.join(dataset.columns)}); choose other names in setOutputMapping")
        feeds = []
        for column in columns:
            spec = sig.inputs[inputs[column].removesuffix(":0")]
            _check_input(column, dataset.schema[column].dataType, spec)
            feeds.append((column, spec))
        tensors = [(t.removesuffix(":0"), outputs[t]) for t in sorted(outputs)]
        plan_outputs = tuple((t, c, _output_type(sig.outputs[t])) for t, c in tensors)
        schema = StructType.fromDDL(", ".join(f"`{c}` {kind}" for _, c, kind in plan_outputs))
        out_schema = StructType(dataset.schema.fields + schema.fields)
        return _Plan(sig.export_dir, sig.key, sig.tags, tuple(feeds), plan_outputs, self.getBatchSize()), out_schema

    def _transform(self, dataset: Any) -> Any:
        plan, schema = self.plan(dataset)
        log.info("TFModel.transform: %s -> %s with %s", [c for c, _ in plan.inputs],
                 [c for _, c, _ in plan.outputs], plan.export_dir)
        return dataset.mapInArrow(functools.partial(_transform_batches, plan, schema.json()), schema)
