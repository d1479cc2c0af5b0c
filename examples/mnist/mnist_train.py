"""Fashion-MNIST CNN training as a tfoy YARN job: `entry_point: examples.mnist.mnist_train:main`.

Every task reads its own shard of the `tfr` TFRecord files straight from HDFS (hdfs_io), trains the example CNN
with MultiWorkerMirroredStrategy, backs up to HDFS after each epoch (a restarted task resumes from the last complete
backup) and the chief exports a numbered SavedModel version for TF Serving. The training step is a custom loop:
Keras 3's `fit` does not run under MultiWorkerMirroredStrategy with more than one worker.
"""

from __future__ import annotations

import argparse
import logging
import math
import time

log = logging.getLogger("mnist_train")


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="mnist_train")
    p.add_argument("--data", required=True, help="folder written by mnist_data_setup --format tfr")
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--batch-size", type=int, default=64, help="per worker")
    p.add_argument("--train-records", type=int, default=60000, help="records in train/ (sets steps per epoch)")
    p.add_argument("--learning-rate", type=float, default=1e-3)
    p.add_argument("--keep-versions", type=int, default=3)
    return p.parse_args(argv)


def main(args: list[str], ctx) -> None:
    import tensorflow as tf

    from examples.mnist.formats import tf_feature_spec
    from examples.mnist.model import build_cnn
    from hdfs_io import fs
    from hdfs_io.checkpoint import HdfsBackupAndRestore
    from hdfs_io.datasets import tfrecord_dataset
    from hdfs_io.export import export_saved_model

    opts = parse_args(args)
    strategy = tf.distribute.MultiWorkerMirroredStrategy()
    workers = strategy.num_replicas_in_sync
    # Equal step counts on every worker (shards may be uneven): a collective op never waits for a finished peer.
    steps = math.ceil(opts.train_records / (opts.batch_size * workers))
    files = fs.glob(f"{ctx.absolute_path(opts.data)}/train/part-*.tfrecord")
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
        model.optimizer.build(model.trainable_variables)
        loss_fn = tf.keras.losses.SparseCategoricalCrossentropy(reduction="none")
    backup = HdfsBackupAndRestore(f"{ctx.model_dir}/backup", ctx=ctx)
    backup.set_model(model)
    backup.on_train_begin()
    start = backup.restored_epoch or 0

    @tf.function
    def train_step(iterator):
        def step(x, y):
            with tf.GradientTape() as tape:
                probs = model(x, training=True)
                loss = tf.nn.compute_average_loss(loss_fn(y, probs), global_batch_size=opts.batch_size * workers)
            grads = tape.gradient(loss, model.trainable_variables)
            model.optimizer.apply_gradients(zip(grads, model.trainable_variables, strict=True))
            acc = tf.reduce_mean(tf.cast(tf.equal(tf.argmax(probs, 1), y), tf.float32))
            return loss, acc

        x, y = next(iterator)
        loss, acc = strategy.run(step, args=(x, y))
        return strategy.reduce("SUM", loss, axis=None), strategy.reduce("MEAN", acc, axis=None)

    iterator = iter(strategy.experimental_distribute_dataset(ds))
    me = f"{ctx.job_name}:{ctx.task_index}"
    if start:
        print(f"{me} resumed from {ctx.model_dir}/backup at epoch {start}", flush=True)
    for epoch in range(start, opts.epochs):
        t0 = time.monotonic()
        total_loss = total_acc = 0.0
        for _ in range(steps):
            loss, acc = train_step(iterator)
            total_loss += float(loss)
            total_acc += float(acc)
        print(f"{me} epoch {epoch + 1}/{opts.epochs}: loss {total_loss / steps:.4f} "
              f"accuracy {total_acc / steps:.4f} ({steps} steps, {time.monotonic() - t0:.0f}s)", flush=True)
        backup.on_epoch_end(epoch)
    version = export_saved_model(model, ctx.export_dir, keep=opts.keep_versions, ctx=ctx)
    if version:
        print(f"{me} exported {version}", flush=True)
