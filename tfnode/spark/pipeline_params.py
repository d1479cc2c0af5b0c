"""TFoS's pipeline Params: the `Has<Name>` mixins with their set<Name>/get<Name>, the args Namespace, and TFParams
(tf_args merged with the Params: what train_fn receives). Names, docs and converters as TFoS 2.2.5 has them, so
code written against `tensorflowonspark.pipeline` finds every setter.
"""

from __future__ import annotations

import argparse
import types
from collections.abc import Iterator
from typing import Any

from pyspark.ml.param import Param, Params, TypeConverters

from tfnode.spark.cluster import InputMode


def _to_dict(value: Any) -> dict:
    if isinstance(value, dict):
        odd = next(((k, v) for k, v in value.items() if not (isinstance(k, str) and isinstance(v, str))), None)
        if odd is not None:
            raise TypeError(f"expected column and tensor names (str -> str), got {odd[0]!r}: {odd[1]!r}")
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
