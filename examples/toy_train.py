"""A tiny job for the YARN path, written as a user would: Keras `model.fit` on TFRecords from HDFS, resumable,
exporting a SavedModel version: TensorFlow's and Keras's own APIs on hdfs:// paths, and hdfs_io's export.

`main(args, ctx)` is the entry point (`entry_point: toy_train:main`, this file shipped with `files:`):
- MultiWorkerMirroredStrategy (chief + workers): `model.fit` on `TFRecordDataset(tf.io.gfile.glob(...))` (TF shards
  the files between workers), `BackupAndRestore` on `model_dir/backup` (a restarted job resumes from the last
  finished epoch), a `state.json` per epoch, and hdfs_io's `export_saved_model` to `export_dir/<n>`
  (written beside and renamed into place by the chief; every worker runs the save, its collectives must match).
- ParameterServerStrategy (chief = coordinator; ps and workers serve): `model.fit` too, with the Keras 2 option
  (`keras: 2` in the spec: Keras 3 cannot fit under this strategy), writing `model_dir/ps_result.json`.
- the evaluator reports new backups until the chief ends.

Records: tf.Example with float `x` [8] and float `y` [1].
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import time

import tensorflow as tf

FEATURES = 8


def write_toy_data(data_dir: str, files: int = 4, records: int = 100, seed: int = 0) -> None:
    """`files` TFRecord files of `records` tf.Examples (x: 8 floats, y = x·w) in data_dir, for tests and benchmarks
    (written with TF's own hdfs://, as a user would)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    w = rng.normal(size=FEATURES)
    tf.io.gfile.makedirs(data_dir)
    for f in range(files):
        with tf.io.TFRecordWriter(f"{data_dir}/part-{f}.tfrecord") as writer:
            for _ in range(records):
                x = rng.normal(size=FEATURES).astype("float32")
                writer.write(tf.train.Example(features=tf.train.Features(feature={
                    "x": tf.train.Feature(float_list=tf.train.FloatList(value=x)),
                    "y": tf.train.Feature(float_list=tf.train.FloatList(value=[float(x @ w)])),
                })).SerializeToString())


def _parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser()
    p.add_argument("--data", required=True, help="HDFS folder of *.tfrecord files")
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--steps", type=int, default=5, help="steps per epoch (the same on every worker)")
    p.add_argument("--epoch-sleep", type=float, default=0.0, help="seconds per epoch (lets tests kill mid-run)")
    p.add_argument("--fail", default="", help="task (e.g. worker:1) that raises, for tests")
    p.add_argument("--fail-once", default="", help="task that raises in its first attempt only, for tests")
    p.add_argument("--hang", default="", help="task that sleeps for ever before training (the stall watchdog's test)")
    p.add_argument("--digest-env", default="", help="print the sha256 of this env variable (tests of secrets)")
    opts = p.parse_args(argv)
    for name in ("epochs", "batch", "steps"):  # shipped as one file, so without examples.argtypes
        if getattr(opts, name) < 1:
            p.error(f"--{name} must be >= 1, got {getattr(opts, name)}")
    return opts


def dataset(data_dir: str, batch: int):
    spec = {"x": tf.io.FixedLenFeature([FEATURES], tf.float32), "y": tf.io.FixedLenFeature([1], tf.float32)}
    files = sorted(tf.io.gfile.glob(f"{data_dir}/*.tfrecord"))
    ds = tf.data.TFRecordDataset(files)
    return ds.map(lambda r: (lambda e: (e["x"], e["y"]))(tf.io.parse_single_example(r, spec))).batch(batch)


def build_model():
    keras = tf.keras  # Keras 3 by default, tf-keras with `keras: 2`: the same code runs on both
    model = keras.Sequential([keras.Input((FEATURES,)), keras.layers.Dense(16, activation="relu"),
                              keras.layers.Dense(1)])
    model.compile(optimizer=keras.optimizers.Adam(0.01), loss="mse")
    return model


def main(args: list[str], ctx) -> None:
    opts = _parse_args(args)
    opts.data = ctx.absolute_path(opts.data)  # relative and /absolute paths are on the cluster's defaultFS
    me = f"{ctx.job_name}:{ctx.task_index}"
    if opts.fail == me:
        raise RuntimeError(f"toy_train: {me} fails on purpose")
    marker = f"{ctx.model_dir}/failed-once-{ctx.job_name}-{ctx.task_index}"
    if opts.fail_once == me and not tf.io.gfile.exists(marker):
        with tf.io.gfile.GFile(marker, "w") as f:
            f.write("failed")
        raise RuntimeError(f"toy_train: {me} fails once on purpose")
    if opts.hang == me:
        while True:
            time.sleep(60)
    if opts.digest_env:
        value = os.environ.get(opts.digest_env)
        digest = hashlib.sha256(value.encode()).hexdigest() if value is not None else "unset"
        print(f"{me} env {opts.digest_env} sha256={digest}", flush=True)
    if ctx.job_name == "evaluator":  # first: an evaluator must never act as the PS coordinator
        return evaluate(opts, ctx)
    if "ps" in ctx.cluster_spec:
        return train_ps(opts, ctx)
    train_mwms(opts, ctx)


class EpochState(tf.keras.callbacks.Callback):
    """Writes `state.json` (the last finished epoch) after each epoch, and sleeps if asked (tests kill mid-run)."""

    def __init__(self, path: str, sleep: float):
        super().__init__()
        self.path, self.sleep = path, sleep

    def on_epoch_end(self, epoch, logs=None):
        if self.sleep:
            time.sleep(self.sleep)
        with tf.io.gfile.GFile(self.path, "w") as f:
            f.write(json.dumps({"epoch": epoch, "loss": float((logs or {}).get("loss", 0.0))}))


def train_mwms(opts: argparse.Namespace, ctx) -> None:
    strategy = tf.distribute.MultiWorkerMirroredStrategy()
    with strategy.scope():
        model = build_model()
    backup = f"{ctx.model_dir}/backup"
    metadata = f"{backup}/training_metadata.json"
    if tf.io.gfile.exists(metadata):
        with tf.io.gfile.GFile(metadata) as f:
            print(f"{ctx.job_name}:{ctx.task_index} resuming at epoch {json.load(f)['epoch']} from {backup}",
                  flush=True)
    callbacks = [tf.keras.callbacks.BackupAndRestore(backup_dir=backup, delete_checkpoint=False)]
    if ctx.is_chief:
        callbacks.append(EpochState(f"{ctx.model_dir}/state.json", opts.epoch_sleep))
    model.fit(dataset(opts.data, opts.batch).repeat(), epochs=opts.epochs, steps_per_epoch=opts.steps,
              callbacks=callbacks, verbose=2)
    if ctx.export_dir:
        from hdfs_io.export import export_saved_model  # the versioned layout TF Serving polls, never half a version

        if target := export_saved_model(model, ctx.export_dir, ctx=ctx):  # None on the other workers
            print(f"exported {target}", flush=True)


def train_ps(opts: argparse.Namespace, ctx) -> None:
    """The coordinator's `fit`: variables live on the ps task(s), steps run on the workers."""
    resolver = tf.distribute.cluster_resolver.TFConfigClusterResolver()
    strategy = tf.distribute.ParameterServerStrategy(resolver)
    with strategy.scope():
        model = build_model()
    # a ps task lost takes its variables with it: the coordinator fails, and once restarted resumes from the backup
    callbacks = [tf.keras.callbacks.BackupAndRestore(backup_dir=f"{ctx.model_dir}/backup-ps", delete_checkpoint=False),
                 EpochState(f"{ctx.model_dir}/state.json", opts.epoch_sleep)]
    history = model.fit(dataset(opts.data, opts.batch).shuffle(256).repeat(), epochs=opts.epochs,
                        steps_per_epoch=opts.steps, callbacks=callbacks, verbose=2)
    final = float(history.history["loss"][-1])
    steps = opts.epochs * opts.steps
    print(json.dumps({"ps_training_steps": steps, "final_loss": final}), flush=True)
    if ctx.model_dir:
        tf.io.gfile.makedirs(ctx.model_dir)
        with tf.io.gfile.GFile(f"{ctx.model_dir}/ps_result.json", "w") as f:
            f.write(json.dumps({"steps": steps, "final_loss": final}))


def evaluate(opts: argparse.Namespace, ctx) -> None:
    """Side-car evaluation: reports each new backup the chief wrote to HDFS (stopped when the chief ends)."""
    seen = None
    state = f"{ctx.model_dir}/state.json"
    while True:
        if tf.io.gfile.exists(state):
            stamp = tf.io.gfile.stat(state).mtime_nsec
            if stamp != seen:
                seen = stamp
                print(f"evaluator: new checkpoint at {stamp}", flush=True)
        time.sleep(2)
