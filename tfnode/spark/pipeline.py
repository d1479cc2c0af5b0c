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

import contextlib
import functools
import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
from pyspark.ml import Estimator, Model
from pyspark.ml.util import DefaultParamsReadable, DefaultParamsReader, DefaultParamsWritable, DefaultParamsWriter

from tfnode.spark.cluster import InputMode, check_feedable, check_whole, feed_columns
from tfnode.spark.pipeline_params import (  # TFoS's pipeline module has them all
    HasBatchSize,
    HasClusterSize,
    HasDriverPSNodes,
    HasEpochs,
    HasExportDir,
    HasGraceSecs,
    HasInputMapping,
    HasInputMode,
    HasMasterNode,
    HasModelDir,
    HasNumPS,
    HasOutputMapping,
    HasProtocol,
    HasReaders,
    HasSignatureDefKey,
    HasSteps,
    HasTagSet,
    HasTensorboard,
    HasTFRecordDir,
    Namespace,
    TFParams,
)
from tfnode.spark.signature import (
    TensorSpec,
    arrow_array,
    as_input,
    check_input,
    output_type,
    read_signature,
    resolve_export_dir,
)

__all__ = ["TFEstimator", "TFModel", "HasBatchSize", "HasClusterSize", "HasDriverPSNodes", "HasEpochs",
    "HasExportDir", "HasGraceSecs", "HasInputMapping", "HasInputMode", "HasMasterNode", "HasModelDir", "HasNumPS",
    "HasOutputMapping", "HasProtocol", "HasReaders", "HasSignatureDefKey", "HasSteps", "HasTagSet", "HasTensorboard",
    "HasTFRecordDir", "Namespace", "TFParams"]

log = logging.getLogger(__name__)


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
        check_whole("TFEstimator: epochs (setEpochs)", args.epochs, 0)  # before any TF node starts
        check_whole("TFEstimator: batch_size (setBatchSize)", args.batch_size, 1)
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
            feed = {spec.key: tf.constant(as_input(v[start:start + plan.batch_size], column, spec))
                    for (column, spec), v in zip(plan.inputs, values, strict=True)}
            predicted = predict(**feed)
            for i, (tensor, _, _) in enumerate(plan.outputs):
                results[i].append(predicted[tensor].numpy())
        arrays = [arrow_array(np.concatenate(r) if r else np.empty((0,)), kind) for r, kind in zip(
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
        check_whole("TFModel: batch_size (setBatchSize)", self.getBatchSize(), 1)  # not in every Spark task
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
            check_input(column, dataset.schema[column].dataType, spec)
            feeds.append((column, spec))
        tensors = [(t.removesuffix(":0"), outputs[t]) for t in sorted(outputs)]
        plan_outputs = tuple((t, c, output_type(sig.outputs[t])) for t, c in tensors)
        # a backtick in a column name is doubled (DDL's escape)
        schema = StructType.fromDDL(", ".join(f"`{c.replace('`', '``')}` {kind}" for _, c, kind in plan_outputs))
        out_schema = StructType(dataset.schema.fields + schema.fields)
        return _Plan(sig.export_dir, sig.key, sig.tags, tuple(feeds), plan_outputs, self.getBatchSize()), out_schema

    def _transform(self, dataset: Any) -> Any:
        plan, schema = self.plan(dataset)
        log.info("TFModel.transform: %s -> %s with %s", [c for c, _ in plan.inputs],
                 [c for _, c, _ in plan.outputs], plan.export_dir)
        return dataset.mapInArrow(functools.partial(_transform_batches, plan, schema.json()), schema)
