"""InputMode.SPARK feeding throughput: tfoy vs tensorflowonspark 2.2.5, same cached RDD, one run.

    python benchmarks/spark_feed.py [--records 20000] [--batch 256]

Each side runs in its own process on `local-cluster[2,1,2048]` with 2 TF nodes; the RDD holds `records` rows of
(784 ints, label), is cached and counted before timing. Timed: cluster.train(rdd) + cluster.shutdown(), with a
map_fun that pulls batches through TFNode.DataFeed.next_batch until should_stop(). TFoS runs from a benchmark-only
venv (~/.cache/tfoy/bench-tfos-venv, no system site packages, tensorflowonspark installed with --no-deps and the
project venv's site-packages reachable through a .pth file for TF/pyspark), so it never becomes a dependency.
A third run feeds the same rows as a cached DataFrame (`cluster.train(df)`: Arrow batches via mapInArrow, no
per-row pickling); a fourth holds the pixels as one 784-byte binary value per row, which shows what Spark's own
conversion of array<long> to Arrow (per element, in the executor's JVM) costs the third.
Last line: RESULT tfoy_rps=… tfos_rps=… ratio=… df_rps=… df_ratio=… (df_ratio: DataFrame feeding over TFoS's
RDD feeding).
"""

from __future__ import annotations

import argparse
import os
import re
import site
import subprocess
import sys
import time
from pathlib import Path

TFOS_VERSION = "2.2.5"
BENCH_VENV = Path.home() / ".cache" / "tfoy" / "bench-tfos-venv"


def ensure_tfos_venv() -> Path:
    python = BENCH_VENV / "bin" / "python"
    marker = BENCH_VENV / f".tfos-{TFOS_VERSION}"
    if marker.exists():
        return python
    subprocess.run([sys.executable, "-m", "venv", "--clear", "--without-pip", str(BENCH_VENV)], check=True)
    subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "--quiet", "--no-deps",
                    f"tensorflowonspark=={TFOS_VERSION}"], check=True)
    purelib = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             check=True, capture_output=True, text=True).stdout.strip()
    project_site = site.getsitepackages()[0]
    Path(purelib, "tfoy_project_site.pth").write_text(project_site + "\n" + str(Path(__file__).parents[1]) + "\n")
    marker.touch()
    return python


def consume(args, ctx):
    """map_fun: pull batches until the feed ends (same code for both implementations)."""
    if args["impl"].startswith("tfoy"):
        from tfnode import TFNode
    else:
        from tensorflowonspark import TFNode
    feed = TFNode.DataFeed(ctx.mgr, train_mode=True)
    count = 0
    while not feed.should_stop():
        batch = feed.next_batch(args["batch"])
        count += len(batch)
    print(f"executor {ctx.executor_id} consumed {count}", flush=True)


def _count_batches(batches):
    import pyarrow as pa

    yield pa.RecordBatch.from_pydict({"n": [sum(b.num_rows for b in batches)]})


def local_cluster_context(name: str):
    """The benchmarks' Spark: `local-cluster[2,1,2048]` (two executor JVMs of one core), this interpreter's Python."""
    os.environ["PYSPARK_PYTHON"] = sys.executable
    from pyspark import SparkConf, SparkContext

    conf = (SparkConf().setMaster("local-cluster[2,1,2048]").setAppName(name)
            .set("spark.executor.memory", "1g").set("spark.task.maxFailures", "1"))
    sc = SparkContext(conf=conf)
    sc.setLogLevel("ERROR")
    return sc


def run_one(impl: str, records: int, batch: int) -> None:

    if impl.startswith("tfoy"):
        from tfnode import TFCluster
    else:
        from tensorflowonspark import TFCluster
    sc = local_cluster_context(f"spark-feed-{impl}")
    try:
        rdd = sc.parallelize(range(records), 8).map(lambda i: ([i % 256] * 784, i % 10)).cache()
        assert rdd.count() == records
        data = rdd
        if impl.startswith("tfoy-df"):  # the same rows as a cached DataFrame, fed over Arrow
            from pyspark.sql import SparkSession

            spark = SparkSession.builder.getOrCreate()
            if impl == "tfoy-df-binary":  # the pixels as 784 bytes: what Spark's Arrow conversion costs
                data = spark.createDataFrame(rdd.map(lambda r: (bytes(r[0]), r[1])), "image binary, label long")
            else:
                data = spark.createDataFrame(rdd, "image array<long>, label long")
            data = data.cache()
            assert data.count() == records
            # the Arrow UDF workers started before timing, as rdd.count() starts the RDD path's Python workers
            assert sum(r.n for r in data.mapInArrow(_count_batches, "n long").collect()) == records
        cluster = TFCluster.run(sc, consume, {"impl": impl, "batch": batch}, 2, 0,
                                input_mode=TFCluster.InputMode.SPARK, reservation_timeout=120)
        start = time.perf_counter()
        cluster.train(data, 1)
        trained = time.perf_counter() - start
        cluster.shutdown()
        elapsed = time.perf_counter() - start
    finally:
        sc.stop()
    print(f"RPS {impl} {records / elapsed:.1f} ({records} records in {elapsed:.2f}s: train {trained:.2f}s, "
          f"shutdown {elapsed - trained:.2f}s)", flush=True)


def run_side(python: Path, script: str, impl: str, argv: list[str], pattern: str) -> re.Match:
    """Runs one side of a benchmark (`script --impl impl …`) in its own process and returns its result line."""
    proc = subprocess.run([str(python), script, "--impl", impl, *argv], capture_output=True, text=True,
                          timeout=1800)
    found = re.search(pattern, proc.stdout, re.M)
    if proc.returncode != 0 or not found:
        sys.stderr.write(proc.stdout[-3000:] + proc.stderr[-5000:])
        raise SystemExit(f"{impl} benchmark failed (exit {proc.returncode})")
    print(found.group(0), flush=True)
    return found


def measure(python: Path, impl: str, records: int, batch: int) -> float:
    found = run_side(python, __file__, impl, ["--records", str(records), "--batch", str(batch)],
                     rf"^RPS {impl} ([0-9.]+).*$")
    return float(found.group(1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=20000)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--impl", choices=["tfoy", "tfoy-df", "tfoy-df-binary", "tfos"],
                        help="internal: run one side in this process")
    args = parser.parse_args()
    if args.impl:
        run_one(args.impl, args.records, args.batch)
        return
    tfos_python = ensure_tfos_venv()
    tfoy = measure(Path(sys.executable), "tfoy", args.records, args.batch)
    tfos = measure(tfos_python, "tfos", args.records, args.batch)
    df = measure(Path(sys.executable), "tfoy-df", args.records, args.batch)
    binary = measure(Path(sys.executable), "tfoy-df-binary", args.records, args.batch)
    print(f"binary DataFrame (the pixels as 784 bytes, no per-element Arrow conversion in Spark): "
          f"rps={binary:.0f} ratio={binary / tfos:.1f}")
    print(f"RESULT tfoy_rps={tfoy:.0f} tfos_rps={tfos:.0f} ratio={tfoy / tfos:.1f} df_rps={df:.0f} "
          f"df_ratio={df / tfos:.1f}")


if __name__ == "__main__":
    main()
