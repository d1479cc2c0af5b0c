"""`./build.sh demo`: the seed's MNIST walk-through on the embedded (or any) Hadoop, through the public commands.

1. data set-up: Fashion-MNIST IDX files → TFRecords on HDFS (examples/mnist/mnist_data_setup.py)
2. training on YARN: `tfoy submit conf/jobs/mnist_train.yaml` (chief + worker, MultiWorkerMirroredStrategy,
   HDFS backups, a numbered SavedModel version exported to HDFS)
3. batch inference on YARN: `tfoy submit conf/jobs/mnist_inference.yaml` → `label prediction` text parts on HDFS
Then the test accuracy from those parts. Last line: RESULT accuracy=… wall_s=…
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

from examples.argtypes import at_least
from examples.mnist import mnist_data_setup
from examples.mnist.mnist_inference import accuracy
from hdfs_io import fs
from hdfs_io.export import latest_version
from hdfs_io.paths import absolute_uri

ROOT = Path(__file__).resolve().parent.parent


def step(title: str) -> None:
    print(f"\n=== {title} ===", flush=True)


def tfoy(*args: str) -> None:
    cmd = ["tfoy", *args]
    print("$ " + " ".join(cmd), flush=True)
    code = subprocess.call(cmd, cwd=ROOT)
    if code != 0:
        raise SystemExit(f"demo: `{' '.join(cmd)}` exited {code}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="tfoy's MNIST demo on YARN + HDFS")
    p.add_argument("--base", default="tfoy-demo", help="HDFS folder for data, model and predictions")
    p.add_argument("--epochs", type=at_least(1), default=8)
    p.add_argument("--workers", type=at_least(0), default=1, help="workers beside the chief")
    p.add_argument("--limit", type=at_least(0), default=0,
                   help="use only the first N records of each split (quick run)")
    opts = p.parse_args(argv)
    t0 = time.monotonic()
    base = absolute_uri(opts.base)
    data, model_dir, export_dir, predictions = (f"{base}/{d}" for d in ("data", "model", "export", "predictions"))

    for stale in (model_dir, predictions):  # a fresh run: no resuming from an earlier demo's backups
        fs.delete(stale, recursive=True)

    step("1/3 data set-up: Fashion-MNIST IDX → TFRecords on HDFS")
    setup_args = ["--output", data, "--format", "tfr", "--num-partitions", "4", "--overwrite"]
    if opts.limit:
        setup_args += ["--limit", str(opts.limit)]
    if mnist_data_setup.main(setup_args) != 0:
        raise SystemExit("demo: data set-up failed")
    train_records = opts.limit or 60000

    step(f"2/3 training on YARN: chief + {opts.workers} worker(s), {opts.epochs} epochs")
    tfoy("submit", "conf/jobs/mnist_train.yaml",
         "--set", f"roles.worker.instances={opts.workers}",
         "--set", f"model_dir={model_dir}", "--set", f"export_dir={export_dir}",
         "--set", f"args=[--data,{data},--epochs,{opts.epochs},--train-records,{train_records}]")
    version = latest_version(export_dir)

    step(f"3/3 batch inference on YARN with {export_dir}/{version}")
    tfoy("submit", "conf/jobs/mnist_inference.yaml",
         "--set", f"args=[--data,{data},--model,{export_dir},--output,{predictions}]")
    acc, n = accuracy(predictions)
    wall = time.monotonic() - t0
    print(f"\ndata:        {data}/{{train,test}}/part-*.tfrecord")
    print(f"model:       {export_dir}/{version}   (checkpoints: {model_dir}/backup)")
    print(f"predictions: {predictions}/part-*   ({n} lines of 'label prediction')")
    print(f"test accuracy {acc:.4f} on {n} Fashion-MNIST test images; wall time {wall:.0f}s")
    print(f"RESULT accuracy={acc:.4f} wall_s={wall:.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
