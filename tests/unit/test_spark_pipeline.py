"""tfnode.spark.pipeline without Spark jobs: Params and setters as TFoS names them, args merging, the conversions."""

from __future__ import annotations

import argparse

import numpy as np
import pyarrow as pa
import pytest

from tfnode.spark.cluster import InputMode
from tfnode.spark.pipeline import Namespace, TFEstimator, TFModel
from tfnode.spark.signature import TensorSpec, arrow_array, as_input, output_type


def _train(args, ctx):  # never run here
    raise AssertionError


def test_estimator_params_have_tfos_setters_defaults_and_merge_into_args():
    est = TFEstimator(_train, argparse.Namespace(lr=0.1))
    assert est.getBatchSize() == 100 and est.getEpochs() == 1 and est.getMasterNode() == "chief"
    assert est.getInputMode() == InputMode.SPARK and est.getGraceSecs() == 30 and est.getSteps() == 1000
    est.setClusterSize(3).setNumPS(1).setEpochs(4).setSteps(7).setExportDir("e").setModelDir("m")
    est.setTensorboard(True).setReaders(2).setProtocol("grpc").setTFRecordDir("t").setDriverPSNodes(False)
    args = est.merge_args_params()
    assert (args.lr, args.cluster_size, args.num_ps, args.epochs, args.steps) == (0.1, 3, 1, 4, 7)
    assert args.export_dir == "e" and args.tensorboard is True and "lr" in args and "nope" not in args
    assert "cluster_size" not in est.args


def test_input_mode_tensorflow_and_export_fn_are_refused_with_the_way_out():
    with pytest.raises(ValueError, match=r"TFCluster.run\(..., input_mode=InputMode.TENSORFLOW\)"):
        TFEstimator(_train, {}).setInputMode(InputMode.TENSORFLOW)
    with pytest.raises(ValueError, match=r"export from train_fn"):
        TFEstimator(_train, {}, export_fn=_train)
    with pytest.raises(TypeError, match=r"expected a dict"):
        TFEstimator(_train, {}).setInputMapping(["image"])
    with pytest.raises(TypeError, match=r"expected column and tensor names \(str -> str\), got 'x': 5"):
        TFModel({}).setInputMapping({"x": 5})  # failed at transform: 'int' object has no attribute 'removesuffix'


def test_model_defaults_and_namespace_forms():
    model = TFModel({"a": 1})
    assert model.getSignatureDefKey() == "serving_default" and model.getTagSet() == "serve"
    assert model.getBatchSize() == 100 and model.getInputMapping() == {} and model.args.a == 1
    assert list(Namespace(["--x", "1"])) == ["--x", "1"] and Namespace(["--x"]).argv == ["--x"]
    with pytest.raises(TypeError, match=r"tf_args: expected a dict"):
        Namespace(42)


def test_outputs_become_spark_types_nested_as_deep_as_their_dimensions():
    assert output_type(TensorSpec("y", "float32", (-1,))) == "float"
    assert output_type(TensorSpec("y", "float32", (-1, 10))) == "array<float>"
    assert output_type(TensorSpec("y", "int64", (-1, 2, 3))) == "array<array<bigint>>"
    with pytest.raises(ValueError, match=r"output y complex64 \(None\) has a dtype with no Spark column type"):
        output_type(TensorSpec("y", "complex64", (-1,)))
    values = np.arange(12, dtype=np.float32).reshape(2, 2, 3)
    array = arrow_array(values, pa.list_(pa.list_(pa.float32())))
    assert array.to_pylist() == values.tolist()


def test_inputs_are_cast_and_reshaped_to_the_signature_or_named():
    spec = TensorSpec("image", "float32", (-1, 28, 28, 1))
    out = as_input(np.zeros((5, 784), dtype=np.int64), "pixels", spec)
    assert out.shape == (5, 28, 28, 1) and out.dtype == np.float32
    with pytest.raises(ValueError, match=r"column 'pixels' holds values of shape \(783,\), which cannot be reshaped "
                                         r"to the signature's input image float32 \(None, 28, 28, 1\)"):
        as_input(np.zeros((5, 783)), "pixels", spec)


def test_counts_are_checked_on_the_driver_before_any_task_or_node():
    """The defect: setBatchSize(0) failed inside every Spark task (`range() arg 3 must not be zero`), and
    setEpochs(-1) only after every TF node had started."""
    with pytest.raises(ValueError, match=r"TFModel: batch_size \(setBatchSize\) must be a whole number >= 1, got 0"):
        TFModel({}).setBatchSize(0).plan(dataset=None)
    with pytest.raises(ValueError, match=r"TFEstimator: epochs \(setEpochs\) must be a whole number >= 0, got -1"):
        TFEstimator(_train, {}).setEpochs(-1)._fit(dataset=None)
    with pytest.raises(ValueError, match=r"TFEstimator: batch_size \(setBatchSize\) must be a whole number >= 1"):
        TFEstimator(_train, {}).setBatchSize(-3)._fit(dataset=None)
