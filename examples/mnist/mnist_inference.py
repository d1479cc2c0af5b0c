"""Batch inference as a tfoy YARN job: `entry_point: examples.mnist.mnist_inference:main`.

Each worker loads the newest complete SavedModel version under the export base (hdfs_io), predicts its shard of
the test TFRecords and writes `label prediction` lines to `<output>/part-<shard>` (written aside, then renamed).
"""

from __future__ import annotations

import argparse

from examples.argtypes import at_least


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="mnist_inference")
    p.add_argument("--data", required=True, help="folder written by mnist_data_setup --format tfr")
    p.add_argument("--model", required=True, help="SavedModel export base (numbered versions)")
    p.add_argument("--output", required=True, help="folder for the prediction text parts")
    p.add_argument("--batch-size", type=at_least(1), default=500)
    return p.parse_args(argv)


def main(args: list[str], ctx) -> None:
    import numpy as np
    import tensorflow as tf

    from examples.mnist.formats import tf_feature_spec
    from hdfs_io import fs
    from hdfs_io.datasets import tfrecord_dataset
    from hdfs_io.publish import publish_bytes
    from hdfs_io.serving import load_latest

    opts = parse_args(args)
    pattern = f"{ctx.absolute_path(opts.data)}/test/part-*.tfrecord"
    files = fs.glob(pattern)
    if not files:  # before the model is loaded
        raise FileNotFoundError(f"{pattern}: no test data (mnist_data_setup --format tfr writes it)")
    version, model = load_latest(ctx.absolute_path(opts.model))
    infer = model.signatures["serving_default"]
    input_name = list(infer.structured_input_signature[1])[0]
    spec = tf_feature_spec()
    ds = tfrecord_dataset(files, ctx=ctx).batch(opts.batch_size).map(lambda b: tf.io.parse_example(b, spec))
    lines = []
    for batch in ds:
        probs = list(infer(**{input_name: tf.cast(batch["image"], tf.float32)}).values())[0]
        preds = np.argmax(probs.numpy(), axis=1)
        lines.extend(f"{label} {pred}" for label, pred in zip(batch["label"].numpy(), preds, strict=True))
    out = ctx.absolute_path(opts.output)
    fs.makedirs(out)
    target = f"{out}/part-{ctx.shard_index:05d}"
    publish_bytes(target, ("\n".join(lines) + "\n").encode() if lines else b"")
    if ctx.shard_index == 0:
        drop_wider_runs(out, ctx.num_shards)
    print(f"{ctx.job_name}:{ctx.task_index} wrote {len(lines)} predictions of version {version} to {target}")


def drop_wider_runs(output: str, num_shards: int) -> list[str]:
    """Parts numbered num_shards or more are an earlier run's, one with more workers (no task of this run writes
    them): left there, they would be read as this run's predictions. Lower numbers are overwritten by this run."""
    from hdfs_io import fs

    stale = [i.uri for i in fs.ls(output) if (n := _part_number(i.name)) is not None and n >= num_shards]
    for uri in stale:
        fs.delete(uri)
    return stale


def _part_number(name: str) -> int | None:
    digits = name.removeprefix("part-")
    return int(digits) if name.startswith("part-") and digits.isdigit() else None


def accuracy(output: str) -> tuple[float, int]:
    """(accuracy, count) over every `label prediction` line in the numbered parts under output."""
    from hdfs_io import fs

    right = total = 0
    for info in fs.ls(output):
        if _part_number(info.name) is None:  # _SUCCESS, a publish temporary
            continue
        for line in fs.read_bytes(info.uri).decode().split("\n"):
            if line.strip():
                label, pred = line.split()
                right += label == pred
                total += 1
    if not total:
        raise ValueError(f"{output}: no predictions")
    return right / total, total
