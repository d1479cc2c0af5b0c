"""examples/mnist/mnist_data_setup.py against the real HDFS: every format verified, Spark and plain paths,
and the bad inputs a user will hit."""

from __future__ import annotations

import gzip
import shutil
import sys

import pytest

from examples.mnist.idx import DEFAULT_DIR
from tests.conftest import ROOT, run_cli

pytestmark = pytest.mark.integration
SETUP = [sys.executable, "-m", "examples.mnist.mnist_data_setup"]


def setup(*args: str, check: bool = True):
    return run_cli(*SETUP, *args, timeout=300, check=check, cwd=ROOT)


@pytest.mark.parametrize("fmt", ["csv", "csv2", "tfr"])
def test_plain_formats_verify(hdfs_tmp, fmt):
    out = setup("--output", f"{hdfs_tmp}/{fmt}", "--format", fmt, "--limit", "300", "--num-partitions", "3",
                "--verify").stdout
    assert f"{hdfs_tmp}/{fmt}/train: 300 records match the source" in out
    assert f"{hdfs_tmp}/{fmt}/test: 300 records match the source" in out


@pytest.mark.parametrize("fmt", ["pickle", "tfr", "csv"])
def test_spark_formats_verify(hdfs, hdfs_tmp, fmt):
    out = setup("--output", f"{hdfs_tmp}/{fmt}", "--format", fmt, "--spark", "--limit", "200", "--num-partitions",
                "2", "--verify").stdout
    assert f"{hdfs_tmp}/{fmt}/train: 200 records match the source" in out
    names = sorted(s.path.rsplit("/", 1)[-1] for s in hdfs.list_status(f"{hdfs_tmp}/{fmt}/train"))
    expected = {
        "csv": ["images", "labels"],
        "tfr": ["part-00000.tfrecord", "part-00001.tfrecord"],
        "pickle": ["_SUCCESS", "part-00000", "part-00001"],
    }
    assert names == expected[fmt]


def test_existing_output_is_refused_then_replaced_with_overwrite(hdfs, hdfs_tmp):
    out = f"{hdfs_tmp}/ds"
    setup("--output", out, "--format", "csv2", "--limit", "50", "--num-partitions", "1")
    proc = setup("--output", out, "--format", "csv2", "--limit", "50", check=False)
    assert proc.returncode == 1 and "already exists: add --overwrite" in proc.stderr
    setup("--output", out, "--format", "tfr", "--limit", "50", "--num-partitions", "2", "--overwrite", "--verify")
    names = sorted(s.path.rsplit("/", 1)[-1] for s in hdfs.list_status(f"{out}/train"))
    assert names == ["part-00000.tfrecord", "part-00001.tfrecord"]
    # nothing left beside it: no staging or old copies
    assert sorted(s.path.rsplit("/", 1)[-1] for s in hdfs.list_status(hdfs_tmp)) == ["ds"]


def test_more_partitions_than_records_warns_of_the_empty_parts(hdfs, hdfs_tmp):
    proc = setup("--output", f"{hdfs_tmp}/few", "--format", "tfr", "--limit", "3", "--num-partitions", "5",
                 "--verify")
    assert "train: 3 records into 5 partitions leaves 2 part files empty" in proc.stderr
    assert f"{hdfs_tmp}/few/test: 3 records match the source" in proc.stdout
    assert len(list(hdfs.list_status(f"{hdfs_tmp}/few/train"))) == 5


def test_unknown_format_lists_valid_ones(hadoop_conf):
    proc = setup("--output", "/tmp/never", "--format", "parquet", check=False)
    assert proc.returncode == 2 and "valid formats are csv, csv2, pickle, tfr" in proc.stderr


def test_missing_and_truncated_idx_files_are_named(hdfs, hdfs_tmp, tmp_path):
    proc = setup("--output", f"{hdfs_tmp}/x", "--idx-dir", str(tmp_path), check=False)
    assert proc.returncode == 2 and f"{tmp_path}/train-images-idx*-ubyte.gz: no such IDX file" in proc.stderr

    for name in ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz", "t10k-images-idx3-ubyte.gz",
                 "t10k-labels-idx1-ubyte.gz"):
        shutil.copy(DEFAULT_DIR / name, tmp_path / name)
    with gzip.open(DEFAULT_DIR / "t10k-labels-idx1-ubyte.gz") as f:
        labels = f.read()
    with gzip.open(tmp_path / "t10k-labels-idx1-ubyte.gz", "wb") as f:
        f.write(labels[:-10])  # ten labels short
    proc = setup("--output", f"{hdfs_tmp}/x", "--idx-dir", str(tmp_path), check=False)
    assert proc.returncode == 2
    assert "t10k-labels-idx1-ubyte.gz: truncated: header says (10000,)" in proc.stderr
    assert not hdfs.get_file_info(hdfs_tmp).length and not list(hdfs.list_status(hdfs_tmp))  # nothing written
