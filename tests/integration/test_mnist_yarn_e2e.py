"""The MNIST walk-through on the real YARN + HDFS, small: data set-up → `tfoy submit` training (chief + worker,
MultiWorkerMirroredStrategy) → exported version → `tfoy submit` inference → prediction parts and accuracy."""

from __future__ import annotations

import sys

import pytest

from examples.mnist.mnist_inference import accuracy
from hdfs_io.export import list_versions
from tests.conftest import ROOT, run_cli

pytestmark = pytest.mark.integration
RECORDS = 600


def test_train_export_and_infer_on_yarn(hdfs, hdfs_tmp):
    base = hdfs_tmp
    data, export, preds = f"{base}/data", f"{base}/export", f"{base}/predictions"
    run_cli(sys.executable, "-m", "examples.mnist.mnist_data_setup", "--output", data, "--format", "tfr",
            "--limit", str(RECORDS), "--num-partitions", "4", cwd=ROOT, timeout=300)

    train = run_cli("tfoy", "submit", "conf/jobs/mnist_train.yaml", "--set", f"model_dir={base}/model",
                    "--set", f"export_dir={export}", "--set", "roles.chief.memory=1536",
                    "--set", "roles.worker.memory=1536",
                    "--set", f"args=[--data,{data},--epochs,2,--train-records,{RECORDS},--batch-size,32]",
                    cwd=ROOT, timeout=900)
    assert "FINISHED SUCCEEDED" in train.stdout
    assert list_versions(export) == [1]
    # the backups the chief wrote after each epoch
    backups = sorted(s.path.rsplit("/", 1)[-1] for s in hdfs.list_status(f"{base}/model/backup"))
    assert backups == ["ckpt-1", "ckpt-2"]

    infer = run_cli("tfoy", "submit", "conf/jobs/mnist_inference.yaml", "--set", "roles.worker.memory=1536",
                    "--set", f"args=[--data,{data},--model,{export},--output,{preds}]", cwd=ROOT, timeout=600)
    assert "FINISHED SUCCEEDED" in infer.stdout
    acc, n = accuracy(preds)
    assert n == RECORDS  # every test record predicted once, across both workers' shards
    assert acc > 0.3  # 10 classes: well above chance after two small epochs
