"""The seed's `mnist_spark.py` on tfoy's TFoS-compatible Spark mode (only the imports changed, plus fixes).

    python -m examples.mnist.mnist_spark --mode train --images mnist/csv/train/images --labels mnist/csv/train/labels \
        --format csv --model mnist/spark_export --cluster_size 2 --epochs 2
    python -m examples.mnist.mnist_spark --mode inference --images mnist/csv/test/images \
        --labels mnist/csv/test/labels --format csv --model mnist/spark_export --output mnist/spark_predictions

InputMode.SPARK (csv, csv2): Spark reads the text parts and feeds (image, label) records to the TF nodes.
InputMode.TENSORFLOW (tfr): each node reads its shard of the TFRecords from HDFS itself (hdfs_io).
Inference writes `label prediction` text parts, like the YARN example.
"""

from __future__ import annotations

import argparse
import logging
import math
import sys

from examples.argtypes import at_least
from tfnode import TFCluster

FORMATS = ("csv", "csv2", "tfr")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="mnist_spark", description=__doc__.split("\n\n")[0])
    p.add_argument("--mode", choices=["train", "inference"], required=True)
    p.add_argument("--images", required=True, help="csv: images folder; csv2: records folder; tfr: split folder")
    p.add_argument("--labels", help="csv: labels folder (one-hot)")
    p.add_argument("--format", default="csv", help=f"one of {', '.join(FORMATS)}")
    p.add_argument("--model", required=True, help="SavedModel export base (numbered versions)")
    p.add_argument("--output", help="inference: folder for the prediction text parts")
    p.add_argument("--cluster_size", type=at_least(1), default=2)
    p.add_argument("--epochs", type=at_least(1), default=2)
    p.add_argument("--batch_size", type=at_least(1), default=64)
    p.add_argument("--master", default="local-cluster[2,1,2048]")
    p.add_argument("--records", type=at_least(0), default=0,
                   help="training records in all (sets the steps per epoch; default: counted, or 60000 for tfr)")
    args = p.parse_args(argv)
    if args.format not in FORMATS:
        p.error(f"unknown --format {args.format!r}: valid formats are {', '.join(FORMATS)}")
    if args.format == "csv" and not args.labels:
        p.error("--format csv needs --labels")
    if args.mode == "inference" and not args.output:
        p.error("--mode inference needs --output")
    return args


# ---- what runs on the TF nodes -------------------------------------------------------------------------------
def train_fun(args: argparse.Namespace, ctx) -> None:
    """MultiWorkerMirrored training; every node runs the same number of steps whatever its share of the feed."""
    import numpy as np
    import tensorflow as tf

    from examples.mnist.model import build_cnn
    from hdfs_io.export import export_saved_model

    strategy = tf.distribute.MultiWorkerMirroredStrategy()
    if args.format == "tfr":
        from examples.mnist.formats import tf_feature_spec
        from hdfs_io.datasets import tfrecord_dataset
        from hdfs_io.fs import glob

        spec = tf_feature_spec()
        files = glob(f"{ctx.absolute_path(args.images)}/part-*.tfrecord")
        parsed = tfrecord_dataset(files, ctx=ctx).batch(1024).map(lambda b: tf.io.parse_example(b, spec))
        images = np.concatenate([b["image"].numpy() for b in parsed]).astype(np.uint8)
        labels = np.concatenate([b["label"].numpy() for b in parsed])
    else:  # InputMode.SPARK: drain this node's feed (bounded batches from Spark) into memory
        feed = ctx.get_data_feed(train_mode=True)
        chunks = []
        while not feed.should_stop():
            batch = feed.next_batch(1024)
            if batch:
                chunks.append(batch)
        rows = [r for chunk in chunks for r in chunk]
        images = np.array([r[0] for r in rows], dtype=np.uint8)
        labels = np.array([r[1] for r in rows], dtype=np.int64)
    workers = strategy.num_replicas_in_sync
    steps = max(1, math.floor(args.records / (args.batch_size * workers)))
    ds = (tf.data.Dataset.from_tensor_slices((tf.cast(images, tf.float32), labels)).shuffle(8192).repeat()
          .batch(args.batch_size, drop_remainder=True))
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.OFF
    with strategy.scope():
        model = build_cnn()
        model.optimizer.build(model.trainable_variables)
        loss_fn = tf.keras.losses.SparseCategoricalCrossentropy(reduction="none")

    @tf.function
    def train_step(iterator):
        def step(x, y):
            with tf.GradientTape() as tape:
                loss = tf.nn.compute_average_loss(loss_fn(y, model(x, training=True)),
                                                  global_batch_size=args.batch_size * workers)
            grads = tape.gradient(loss, model.trainable_variables)
            model.optimizer.apply_gradients(zip(grads, model.trainable_variables, strict=True))
            return loss

        return strategy.reduce("SUM", strategy.run(step, args=next(iterator)), axis=None)

    iterator = iter(strategy.experimental_distribute_dataset(ds.with_options(options)))
    for epoch in range(args.epochs):
        loss = sum(float(train_step(iterator)) for _ in range(steps)) / steps
        print(f"{ctx.job_name}:{ctx.task_index} epoch {epoch + 1}: loss {loss:.4f} ({len(labels)} local records)",
              flush=True)
    export_saved_model(model, ctx.absolute_path(args.model), ctx=ctx)


def inference_fun(args: argparse.Namespace, ctx) -> None:
    """Predicts fed batches with the newest complete exported version; results go back to Spark in order."""
    import numpy as np
    import tensorflow as tf

    from hdfs_io.serving import load_latest

    _, model = load_latest(ctx.absolute_path(args.model))
    infer = model.signatures["serving_default"]
    input_name = list(infer.structured_input_signature[1])[0]
    feed = ctx.get_data_feed(train_mode=False)
    while not feed.should_stop():
        batch = feed.next_batch(args.batch_size)
        if not batch:
            continue
        x = tf.constant(np.array([r[0] for r in batch], dtype=np.float32))
        probs = list(infer(**{input_name: x}).values())[0].numpy()
        feed.batch_results([f"{r[1]} {p}" for r, p in zip(batch, np.argmax(probs, axis=1), strict=True)])


def node_fun(args: argparse.Namespace, ctx) -> None:
    (train_fun if args.mode == "train" else inference_fun)(args, ctx)


# ---- the driver ------------------------------------------------------------------------------------------------
def records_rdd(sc, args: argparse.Namespace):
    """(image list[784], label int) records from the text formats, as the seed builds them."""
    from examples.mnist.formats import parse_csv2_line, parse_one_hot
    from hdfs_io.paths import absolute_uri

    if args.format == "csv2":
        return sc.textFile(absolute_uri(args.images)).map(parse_csv2_line).map(lambda r: (r[0].tolist(), r[1]))
    images = sc.textFile(absolute_uri(args.images)).map(lambda line: [int(v) for v in line.split(",")])
    labels = sc.textFile(absolute_uri(args.labels)).map(parse_one_hot)
    return images.zip(labels)


def examples_zip() -> str:
    import tempfile
    import zipfile
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent.parent
    path = Path(tempfile.mkdtemp(prefix="mnist-spark-")) / "examples.zip"
    with zipfile.ZipFile(path, "w") as zf:
        for f in sorted((root / "examples").rglob("*.py")):
            zf.write(f, f.relative_to(root).as_posix())
    return str(path)


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    args = parse_args(argv)
    from pyspark import SparkConf, SparkContext

    sc = SparkContext(conf=SparkConf().setMaster(args.master).setAppName(f"mnist_spark_{args.mode}")
                      .set("spark.task.maxFailures", "1"))
    try:
        sc.addPyFile(examples_zip())  # the executors' Python workers import this example's map functions
        spark_mode = args.format != "tfr"
        if args.mode == "inference" and not spark_mode:
            raise SystemExit("inference reads the fed records: use --format csv or csv2")
        rdd = records_rdd(sc, args).cache() if spark_mode else None
        if args.mode == "train":
            args.records = args.records or (rdd.count() if rdd is not None else 60000)
        cluster = TFCluster.run(sc, node_fun, args, args.cluster_size, num_ps=0,
                                input_mode=TFCluster.InputMode.SPARK if spark_mode else TFCluster.InputMode.TENSORFLOW,
                                master_node="chief", reservation_timeout=120)
        if args.mode == "train":
            if rdd is not None:
                cluster.train(rdd, num_epochs=1)
            cluster.shutdown()
            print(f"exported to {args.model}")
        else:
            from hdfs_io.paths import absolute_uri

            cluster.inference(rdd).saveAsTextFile(absolute_uri(args.output))
            cluster.shutdown()
            print(f"predictions in {args.output}")
    finally:
        sc.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
