"""The seed's mnist_spark.py flow on local-cluster Spark + real HDFS: SPARK-mode training and inference on csv,
TENSORFLOW-mode training on tfr."""

from __future__ import annotations

import sys

import pytest

from examples.mnist.mnist_inference import accuracy
from hdfs_io.export import list_versions
from tests.conftest import ROOT, run_cli

pytestmark = pytest.mark.integration
SPARK = [sys.executable, "-m", "examples.mnist.mnist_spark"]


def test_spark_mode_train_then_inference(hdfs_tmp):
    data = f"{hdfs_tmp}/csv"
    run_cli(sys.executable, "-m", "examples.mnist.mnist_data_setup", "--output", data, "--format", "csv",
            "--limit", "500", "--num-partitions", "3", cwd=ROOT, timeout=300)
    run_cli(*SPARK, "--mode", "train", "--images", f"{data}/train/images", "--labels", f"{data}/train/labels",
            "--format", "csv", "--model", f"{hdfs_tmp}/export", "--cluster_size", "2", "--epochs", "2",
            cwd=ROOT, timeout=600)
    assert list_versions(f"{hdfs_tmp}/export") == [1]
    run_cli(*SPARK, "--mode", "inference", "--images", f"{data}/test/images", "--labels", f"{data}/test/labels",
            "--format", "csv", "--model", f"{hdfs_tmp}/export", "--output", f"{hdfs_tmp}/pred",
            "--cluster_size", "2", cwd=ROOT, timeout=600)
    acc, n = accuracy(f"{hdfs_tmp}/pred")
    assert n == 500  # 500 test records over 3 partitions: none lost, none doubled
    assert acc > 0.2


def test_tensorflow_mode_reads_tfrecords_from_hdfs(hdfs_tmp):
    data = f"{hdfs_tmp}/tfr"
    run_cli(sys.executable, "-m", "examples.mnist.mnist_data_setup", "--output", data, "--format", "tfr",
            "--limit", "400", "--num-partitions", "2", cwd=ROOT, timeout=300)
    run_cli(*SPARK, "--mode", "train", "--images", f"{data}/train", "--format", "tfr", "--model",
            f"{hdfs_tmp}/export", "--cluster_size", "2", "--epochs", "1", "--records", "400", cwd=ROOT, timeout=600)
    assert list_versions(f"{hdfs_tmp}/export") == [1]


def test_bad_format_and_missing_labels_are_named(hadoop_conf):
    proc = run_cli(*SPARK, "--mode", "train", "--images", "x", "--format", "parquet", "--model", "m",
                   check=False, cwd=ROOT)
    assert proc.returncode == 2 and "valid formats are csv, csv2, tfr" in proc.stderr
    proc = run_cli(*SPARK, "--mode", "train", "--images", "x", "--format", "csv", "--model", "m",
                   check=False, cwd=ROOT)
    assert proc.returncode == 2 and "--format csv needs --labels" in proc.stderr
