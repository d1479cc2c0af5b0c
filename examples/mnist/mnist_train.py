"""Fashion-MNIST CNN training as a tfoy YARN job: `entry_point: examples.mnist.mnist_train:main`.

Every task reads its own shard of the `tfr` TFRecord files straight from HDFS (hdfs_io), trains the example CNN
with MultiWorkerMirroredStrategy, backs up to HDFS after each epoch (a restarted task resumes from the last complete
backup) and the chief exports a numbered SavedModel version for TF Serving. Training is plain `model.fit`
(tfoy fixes Keras 3's multi-worker `fit` in every task, see tfnode/keras_compat.py).
"""

from __future__ import annotations

import argparse
import logging
import math

from examples.argtypes import at_least

log = logging.getLogger("mnist_train")


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="mnist_train")
    p.add_argument("--data", required=True, help="folder written by mnist_data_setup --format tfr")
    p.add_argument("--epochs", type=at_least(1), default=5)
    p.add_argument("--batch-size", type=at_least(1), default=64, help="per worker")
    p.add_argument("--train-records", type=at_least(1), default=60000, help="records in train/ (sets steps per epoch)")
    p.add_argument("--learning-rate", type=float, default=1e-3)
    p.add_argument("--keep-versions", type=at_least(1), default=3)
    return p.parse_args(argv)


def main(args: list[str], ctx) -> None:
    import tensorflow as tf

    from examples.mnist.formats import tf_feature_spec
    from examples.mnist.model import build_cnn
    from hdfs_io.checkpoint import HdfsBackupAndRestore
    from hdfs_io.datasets import tfrecord_dataset
    from hdfs_io.export import export_saved_model

    opts = parse_args(args)
    strategy = tf.distribute.MultiWorkerMirroredStrategy()
    workers = strategy.num_replicas_in_sync
    # Equal step counts on every worker (shards may be uneven): a collective op never waits for a finished peer.
    steps = math.ceil(opts.train_records / (opts.batch_size * workers))
    pattern = f"{ctx.absolute_path(opts.data)}/train/part-*.tfrecord"
    files = tf.io.gfile.glob(pattern)
    if not files:
        raise FileNotFoundError(f"{pattern}: no training data (mnist_data_setup --format tfr writes it)")
    spec = tf_feature_spec()

    def parse(batch):
        parsed = tf.io.parse_example(batch, spec)
        return tf.cast(parsed["image"], tf.float32), parsed["label"]

    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.OFF  # sharded by file
    ds = (
        tfrecord_dataset(files, ctx=ctx, shuffle_files=True, seed=42)
        .shuffle(4096, seed=ctx.task_index)
        .repeat()
        .batch(opts.batch_size, drop_remainder=True)
        .map(parse, num_parallel_calls=tf.data.AUTOTUNE)
        .prefetch(tf.data.AUTOTUNE)
        .with_options(options)
    )
    with strategy.scope():
        model = build_cnn(opts.learning_rate)
    # tfoy's backup callback: numbered ckpt-<epoch> folders on HDFS, the newest two kept (Keras's own
    # BackupAndRestore(backup_dir="hdfs://…") works too, keeping one)
    backup = HdfsBackupAndRestore(f"{ctx.model_dir}/backup", ctx=ctx)
    model.fit(ds, epochs=opts.epochs, steps_per_epoch=steps, callbacks=[backup], verbose=2)
    me = f"{ctx.job_name}:{ctx.task_index}"
    if backup.restored_epoch:
        print(f"{me} had resumed from {ctx.model_dir}/backup at epoch {backup.restored_epoch}", flush=True)
    version = export_saved_model(model, ctx.export_dir, keep=opts.keep_versions, ctx=ctx)
    if version:
        print(f"{me} exported {version}", flush=True)
