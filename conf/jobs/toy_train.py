"""A tiny job for the YARN path: Keras on TFRecords from HDFS, resumable, exporting a SavedModel version to HDFS.

`main(args, ctx)` is the entry point (`entry_point: toy_train:main`, this file shipped with `files:`):
- MultiWorkerMirroredStrategy (chief + workers): each task reads its shard of the TFRecord files and trains a small
  Keras Dense model; after each epoch the chief saves weights + epoch to HDFS (`model_dir/backup`), so a restarted
  job resumes from the last finished epoch; the chief exports `export_dir/<version>/` (temp name, then rename).
- ParameterServerStrategy (chief = coordinator, ps and workers serve): a custom loop with ClusterCoordinator.
- the evaluator reads the chief's checkpoints until the chief ends.

Records: tf.Example with float `x` [8] and float `y` [1] (see `write_toy_records`).
HDFS goes through hdfs-native directly: TensorFlow 2.21 cannot open hdfs:// paths itself.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

FEATURES = 8


def _parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser()
    p.add_argument("--data", required=True, help="HDFS folder of *.tfrecord files")
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--steps", type=int, default=5, help="steps per epoch (the same on every worker)")
    p.add_argument("--epoch-sleep", type=float, default=0.0, help="seconds per epoch (lets tests kill mid-run)")
    p.add_argument("--fail", default="", help="task (e.g. worker:1) that raises, for tests")
    return p.parse_args(argv)


def _hdfs():
    from hdfs_native import Client

    return Client()


def _path(uri: str) -> str:
    from hdfs_io.paths import absolute_uri, split_uri

    return split_uri(absolute_uri(uri))[2]


def download(remote_dir: str, local_dir: Path, suffix: str = "") -> list[Path]:
    client = _hdfs()
    local_dir.mkdir(parents=True, exist_ok=True)
    out = []
    root = _path(remote_dir)
    for st in sorted(client.list_status(root, recursive=True), key=lambda s: s.path):
        if st.isdir or not st.path.endswith(suffix):
            continue
        target = local_dir / os.path.relpath(st.path, root)
        target.parent.mkdir(parents=True, exist_ok=True)
        with client.read(st.path) as r:
            target.write_bytes(r.read())
        out.append(target)
    return out


def upload_dir(local_dir: Path, remote_dir: str) -> None:
    """Replaces remote_dir by local_dir: written under a temp name, then renamed (readers never see half)."""
    client = _hdfs()
    dst = _path(remote_dir)
    tmp = f"{dst}.tmp-{os.getpid()}"
    for f in sorted(local_dir.rglob("*")):
        if f.is_file():
            target = f"{tmp}/{f.relative_to(local_dir).as_posix()}"
            client.mkdirs(os.path.dirname(target), create_parent=True)
            with client.create(target) as w:
                w.write(f.read_bytes())
    client.mkdirs(os.path.dirname(dst), create_parent=True)
    client.delete(dst, recursive=True)
    client.rename(tmp, dst)


def dataset(files: list[Path], batch: int):
    import tensorflow as tf

    spec = {"x": tf.io.FixedLenFeature([FEATURES], tf.float32), "y": tf.io.FixedLenFeature([1], tf.float32)}
    ds = tf.data.TFRecordDataset([str(f) for f in files])
    return ds.map(lambda r: (lambda e: (e["x"], e["y"]))(tf.io.parse_single_example(r, spec))).batch(batch)


def build_model():
    import keras

    model = keras.Sequential([keras.Input((FEATURES,)), keras.layers.Dense(16, activation="relu"),
                              keras.layers.Dense(1)])
    model.compile(optimizer=keras.optimizers.Adam(0.01), loss="mse")
    return model


def main(args: list[str], ctx) -> None:
    opts = _parse_args(args)
    me = f"{ctx.job_name}:{ctx.task_index}"
    if opts.fail == me:
        raise RuntimeError(f"toy_train: {me} fails on purpose")
    if ctx.job_name == "evaluator":  # first: an evaluator must never act as the PS coordinator
        return evaluate(opts, ctx)
    if "ps" in ctx.cluster_spec:
        return train_ps(opts, ctx)
    train_mwms(opts, ctx)


def train_mwms(opts: argparse.Namespace, ctx) -> None:
    """A custom loop over a Keras model: Keras 3.x's `fit` fails under MultiWorkerMirroredStrategy on more than
    one worker (it reduces PerReplica batches while building), so the step is written with `strategy.run`."""
    import numpy as np
    import tensorflow as tf

    strategy = tf.distribute.MultiWorkerMirroredStrategy()
    work = Path(tempfile.mkdtemp(prefix="toy-"))
    files = download(opts.data, work / "data", ".tfrecord")
    mine = [f for i, f in enumerate(files) if i % ctx.num_shards == ctx.shard_index] or files
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.OFF
    ds = dataset(mine, opts.batch).repeat().with_options(options)

    with strategy.scope():
        model = build_model()
    start_epoch = 0
    state_uri = f"{ctx.model_dir}/backup"
    if _exists(f"{state_uri}/state.json"):  # resume: weights and epoch of the last finished epoch
        download(state_uri, work / "restore")
        state = json.loads((work / "restore" / "state.json").read_text())
        with np.load(work / "restore" / "weights.npz") as z:
            model.set_weights([z[f"w{i}"] for i in range(len(z.files))])
        start_epoch = state["epoch"] + 1
        print(f"{ctx.job_name}:{ctx.task_index} resuming at epoch {start_epoch} from {state_uri}", flush=True)

    iterator = iter(strategy.experimental_distribute_dataset(ds))
    lr = 0.05

    @tf.function
    def train_step(it):
        def step(x, y):
            with tf.GradientTape() as tape:
                loss = tf.reduce_mean((model(x, training=True) - y) ** 2)
            variables = [v.value for v in model.trainable_variables]
            grads = tape.gradient(loss, variables)
            grads = tf.distribute.get_replica_context().all_reduce("MEAN", grads)
            for v, g in zip(variables, grads, strict=True):
                v.assign_sub(lr * g)
            return loss

        x, y = next(it)
        return strategy.reduce("MEAN", strategy.run(step, args=(x, y)), axis=None)

    for epoch in range(start_epoch, opts.epochs):
        loss = float(np.mean([float(train_step(iterator)) for _ in range(opts.steps)]))
        print(f"{ctx.job_name}:{ctx.task_index} epoch {epoch} loss {loss:.4f}", flush=True)
        if opts.epoch_sleep:
            time.sleep(opts.epoch_sleep)
        if ctx.is_chief and ctx.model_dir:
            save = work / f"save-{epoch}"
            save.mkdir()
            np.savez(save / "weights.npz", **{f"w{i}": w for i, w in enumerate(model.get_weights())})
            (save / "state.json").write_text(json.dumps({"epoch": epoch, "loss": loss}))
            upload_dir(save, state_uri)
    if ctx.is_chief and ctx.export_dir:
        export(model, ctx.export_dir)


def export(model, export_dir: str) -> str:
    """`export_dir/<n+1>/` SavedModel, published by rename (TF Serving never sees a partial version)."""
    local = Path(tempfile.mkdtemp(prefix="export-")) / "model"
    model.export(str(local))
    client = _hdfs()
    base = _path(export_dir)
    client.mkdirs(base, create_parent=True)
    versions = [int(os.path.basename(s.path)) for s in client.list_status(base) if os.path.basename(s.path).isdigit()]
    version = max(versions, default=0) + 1
    upload_dir(local, f"{export_dir}/{version}")
    print(f"exported {export_dir}/{version}", flush=True)
    return f"{export_dir}/{version}"


def _exists(uri: str) -> bool:
    try:
        _hdfs().get_file_info(_path(uri))
        return True
    except FileNotFoundError:
        return False


def train_ps(opts: argparse.Namespace, ctx) -> None:
    """The coordinator's loop: variables live on the ps task(s), steps run on the workers."""
    import tensorflow as tf

    resolver = tf.distribute.cluster_resolver.TFConfigClusterResolver()
    strategy = tf.distribute.ParameterServerStrategy(resolver)
    coordinator = tf.distribute.coordinator.ClusterCoordinator(strategy)
    work = Path(tempfile.mkdtemp(prefix="toy-ps-"))
    files = download(opts.data, work / "data", ".tfrecord")
    records = dataset(files, opts.batch)
    xs, ys = zip(*[(x.numpy(), y.numpy()) for x, y in records.unbatch()], strict=True)
    x_all, y_all = tf.constant(xs), tf.constant(ys)

    with strategy.scope():
        w = tf.Variable(tf.zeros([FEATURES, 1]))
        b = tf.Variable(tf.zeros([1]))

    def per_worker_dataset():
        return tf.data.Dataset.from_tensor_slices((x_all, y_all)).shuffle(256).batch(opts.batch).repeat()

    per_worker = coordinator.create_per_worker_dataset(per_worker_dataset)
    it = iter(per_worker)

    @tf.function
    def step(iterator):
        def replica(x, y):
            with tf.GradientTape() as tape:
                loss = tf.reduce_mean((tf.matmul(x, w) + b - y) ** 2)
            grads = tape.gradient(loss, [w, b])
            w.assign_sub(0.05 * grads[0])
            b.assign_sub(0.05 * grads[1])
            return loss

        x, y = next(iterator)
        return strategy.run(replica, args=(x, y))

    steps = opts.epochs * max(1, len(xs) // opts.batch)
    losses = [coordinator.schedule(step, args=(it,)) for _ in range(steps)]
    coordinator.join()
    final = float(losses[-1].fetch())
    print(json.dumps({"ps_training_steps": steps, "final_loss": final}), flush=True)
    if ctx.model_dir:
        client = _hdfs()
        client.mkdirs(_path(ctx.model_dir), create_parent=True)
        with client.create(_path(f"{ctx.model_dir}/ps_result.json")) as f:
            f.write(json.dumps({"steps": steps, "final_loss": final}).encode())


def evaluate(opts: argparse.Namespace, ctx) -> None:
    """Side-car evaluation: reports each new backup the chief mirrored to HDFS (stopped when the chief ends)."""
    seen = None
    while True:
        meta = f"{ctx.model_dir}/backup"
        if _exists(meta):
            stamp = max(s.modification_time for s in _hdfs().list_status(_path(meta), recursive=True))
            if stamp != seen:
                seen = stamp
                print(f"evaluator: new checkpoint at {stamp}", flush=True)
        time.sleep(2)
