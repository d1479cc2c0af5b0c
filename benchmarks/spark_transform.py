"""TFModel.transform throughput: tfoy's pipeline vs tensorflowonspark 2.2.5's, same SavedModel and DataFrame, one run.

    python benchmarks/spark_transform.py [--records 10000] [--batch 100] [--repeats 3]

Each side runs in its own process on `local-cluster[2,1,2048]`: the Fashion-MNIST test images (`records` of them,
784 ints + label, 4 partitions) as a cached DataFrame, and one SavedModel (Keras 3 `model.export` of a
784-128-10 dense model with its rescaling inside, written once to a local folder both sides read). Timed:
`TFModel(...).transform(df)` written to Spark's `noop` sink, so every output row is computed. The first run
includes each Python worker importing TensorFlow and loading the model (both sides cache the model per worker);
`repeats` more runs are the steady state. TFoS runs from benchmarks/spark_feed.py's benchmark-only venv.
Last line: RESULT transform_ratio=… (TFoS's median steady-state seconds over tfoy's).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.spark_feed import ensure_tfos_venv, local_cluster_context, run_side  # noqa: E402


def export_model(folder: str) -> None:
    import keras

    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((784,), name="image"), keras.layers.Rescaling(1 / 255),
                              keras.layers.Dense(128, activation="relu"), keras.layers.Dense(10)])
    model.export(folder, verbose=False)


def run_one(impl: str, export_dir: str, records: int, batch: int, repeats: int) -> None:
    import pyarrow as pa
    from pyspark.sql import SparkSession

    from examples.mnist.idx import load_split

    if impl == "tfoy":
        from tfnode.spark.pipeline import TFModel
    else:
        from tensorflowonspark.pipeline import TFModel
    sc = local_cluster_context(f"spark-transform-{impl}")
    try:
        spark = SparkSession.builder.getOrCreate()
        images, labels = load_split("test")
        images, labels = images[:records].astype("int64"), labels[:records].astype("int64")
        table = pa.table({"image": pa.FixedSizeListArray.from_arrays(images.reshape(-1), 784).cast(
            pa.list_(pa.int64())), "label": labels})
        df = spark.createDataFrame(table).repartition(4).cache()
        assert df.count() == records
        model = (TFModel({}).setExportDir(export_dir).setInputMapping({"image": "image"})
                 .setOutputMapping({"output_0": "logits"}).setSignatureDefKey("serving_default").setTagSet("serve")
                 .setBatchSize(batch))
        times = []
        for _ in range(repeats + 1):
            start = time.perf_counter()
            model.transform(df).write.format("noop").mode("overwrite").save()
            times.append(time.perf_counter() - start)
        first = model.transform(df).select("logits").first()
        assert len(first["logits"]) == 10
    finally:
        sc.stop()
    print(f"SECONDS {impl} first {times[0]:.3f} steady {statistics.median(times[1:]):.3f} runs "
          + " ".join(f"{t:.2f}" for t in times), flush=True)


def measure(python: Path, impl: str, args: argparse.Namespace, export_dir: str) -> tuple[float, float]:
    found = run_side(python, __file__, impl, ["--export-dir", export_dir, "--records", str(args.records), "--batch",
                                              str(args.batch), "--repeats", str(args.repeats)],
                     rf"^SECONDS {impl} first ([0-9.]+) steady ([0-9.]+).*$")
    return float(found.group(1)), float(found.group(2))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=10000)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--impl", choices=["tfoy", "tfos"], help="internal: run one side in this process")
    parser.add_argument("--export-dir", help="internal: the SavedModel both sides read")
    args = parser.parse_args()
    if args.impl:
        run_one(args.impl, args.export_dir, args.records, args.batch, args.repeats)
        return
    tfos_python = ensure_tfos_venv()
    with tempfile.TemporaryDirectory(prefix="tfoy-bench-transform-") as folder:
        subprocess.run([sys.executable, "-c", f"import sys; sys.path.insert(0, {str(Path(__file__).parents[1])!r}); "
                        f"from benchmarks.spark_transform import export_model; export_model({folder + '/model'!r})"],
                       check=True, capture_output=True)
        export_dir = f"file://{folder}/model"  # a bare path would be on the defaultFS (HDFS), as Hadoop reads it
        tfoy_first, tfoy = measure(Path(sys.executable), "tfoy", args, export_dir)
        tfos_first, tfos = measure(tfos_python, "tfos", args, export_dir)
    print(f"{args.records} images: tfoy {args.records / tfoy:.0f} images/s, TFoS {args.records / tfos:.0f} images/s "
          f"steady; first run (TF import + model load in each worker) tfoy {tfoy_first:.2f}s, TFoS {tfos_first:.2f}s "
          f"({tfos_first / tfoy_first:.1f}x)")
    print(f"RESULT transform_ratio={tfos / tfoy:.1f}")


if __name__ == "__main__":
    main()
