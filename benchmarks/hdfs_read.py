"""Reading the same Fashion-MNIST TFRecord and CSV files from local disk (tf.data) and from HDFS (hdfs_io).

60,000 tf.Examples (784 int64 pixels + label) in 4 files, made from the IDX files in
/usr/share/datasets/fashion-mnist, and the same rows as 4 CSV files (label + 784 pixels). Both sides use the same
pipeline: interleave over the files (cycle 4, parallel) -> batch 256 -> parse (parse_example for TFRecord; CSV is
decode_csv on the batch of lines) -> prefetch. Each configuration runs `--repeats` times, alternating. A ratio is
the median of the repeats' ratios (each hdfs_io run against the local run just before it): the machine's speed
drifts by ±20 % within a run, and a ratio of medians can pit local runs from a fast stretch against hdfs_io runs
from a slow one; the ratio of medians is printed beside it. local_rps / hdfs_rps are medians. hdfs_io reads
block files directly when the cluster allows short-circuit local reads (the embedded one does); the same files
through the DataNode's stream (TFOY_HDFS_SHORT_CIRCUIT=0) run side by side.
Last line: `RESULT tfrecord_ratio=… csv_ratio=… local_rps=… hdfs_rps=…` (rps of the TFRecord runs).
"""

from __future__ import annotations

import argparse
import gzip
import logging
import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from hdfs_io import datasets, fs, tf_bridge  # noqa: E402

DATA = Path("/usr/share/datasets/fashion-mnist")
DEFAULT_FILES = 4
BATCH = 256


def load_fashion_mnist() -> tuple[np.ndarray, np.ndarray]:
    with gzip.open(DATA / "train-images-idx3-ubyte.gz") as f:
        images = np.frombuffer(f.read(), np.uint8, offset=16).reshape(-1, 784)
    with gzip.open(DATA / "train-labels-idx1-ubyte.gz") as f:
        labels = np.frombuffer(f.read(), np.uint8, offset=8)
    return images, labels


def write_local(images: np.ndarray, labels: np.ndarray, folder: str, n_files: int) -> tuple[list[str], list[str]]:
    import tensorflow as tf

    tfr, csvs = [], []
    table = np.array([str(i) for i in range(256)], dtype=object)
    for s in range(n_files):
        idx = range(s, len(images), n_files)
        path = f"{folder}/part-{s}.tfrecord"
        with tf.io.TFRecordWriter(path) as w:
            for i in idx:
                feature = {
                    "image": tf.train.Feature(int64_list=tf.train.Int64List(value=images[i].tolist())),
                    "label": tf.train.Feature(int64_list=tf.train.Int64List(value=[int(labels[i])])),
                }
                w.write(tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString())
        tfr.append(path)
        path = f"{folder}/part-{s}.csv"
        rows = np.concatenate([labels[list(idx), None], images[list(idx)]], axis=1)
        with open(path, "w") as f:
            f.write("label," + ",".join(f"p{j}" for j in range(784)) + "\n")
            f.writelines(",".join(table[row]) + "\n" for row in rows)
        csvs.append(path)
    return tfr, csvs


def run(ds, expected: int) -> float:
    """Records per second from making the iterator to the last batch. The iterator's teardown is left out: when
    tf.data autotunes (both sides here) it waits for the autotuner's next period (up to 0.3-0.6 s into a run this
    short) and so adds the same random delay, unrelated to reading, to either side."""
    start = time.perf_counter()
    iterator = iter(ds)
    n = 0
    for batch in iterator:
        n += int(batch[0].shape[0]) if isinstance(batch, tuple) else int(batch["label"].shape[0])
        last = time.perf_counter()
    del iterator
    if n != expected:
        raise AssertionError(f"read {n} records, expected {expected}")
    return n / (last - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=15,
                        help="runs per configuration (single runs vary ±20 %%; with 7 the ratio moved ±0.08)")
    parser.add_argument("--no-csv", action="store_true")
    parser.add_argument("--files", type=int, default=DEFAULT_FILES, help="files per format (same total records)")
    args = parser.parse_args()
    n_files = args.files
    logging.basicConfig(level=logging.WARNING)
    import tensorflow as tf

    spec = {"image": tf.io.FixedLenFeature([784], tf.int64), "label": tf.io.FixedLenFeature([], tf.int64)}

    def parse(serialized):
        return tf.io.parse_example(serialized, spec)

    def tfrecord_pipeline(files_ds):
        return files_ds.batch(BATCH).map(parse, num_parallel_calls=tf.data.AUTOTUNE).prefetch(2)

    def local_tfrecord():
        files = tf.data.Dataset.from_tensor_slices(local_tfr)
        return tfrecord_pipeline(files.interleave(lambda f: tf.data.TFRecordDataset(f, buffer_size=1 << 20),
                                                  cycle_length=min(n_files, 4), num_parallel_calls=tf.data.AUTOTUNE))

    def hdfs_tfrecord(verify: bool):
        ds = datasets.tfrecord_dataset(f"{remote}/*.tfrecord", cycle_length=min(n_files, 4), verify=verify)
        return tfrecord_pipeline(ds)

    def via_datanode(make):
        """The same reads, streamed by the DataNode instead of short-circuited (the reader looks when TF opens a
        file, i.e. during the run; the loop below resets it before each configuration)."""
        def made():
            os.environ["TFOY_HDFS_SHORT_CIRCUIT"] = "0"
            return make()
        return made

    defaults = [tf.int32] * 785

    def decode_csv(lines):
        return tuple(tf.io.decode_csv(lines, [tf.constant([], tf.int32)] * 785))

    def local_csv():
        files = tf.data.Dataset.from_tensor_slices(local_csv_files)
        ds = files.interleave(lambda f: tf.data.TextLineDataset(f, buffer_size=1 << 20).skip(1),
                              cycle_length=min(n_files, 4), num_parallel_calls=tf.data.AUTOTUNE)
        return ds.batch(BATCH).map(decode_csv, num_parallel_calls=tf.data.AUTOTUNE).prefetch(2)

    def hdfs_csv(verify: bool):
        return datasets.csv_dataset(f"{remote}/*.csv", defaults, cycle_length=min(n_files, 4), verify=verify,
                                    batch_size=BATCH).prefetch(2)

    with tempfile.TemporaryDirectory(prefix="hdfs-read-bench-") as local_dir:
        t = time.perf_counter()
        images, labels = load_fashion_mnist()
        local_tfr, local_csv_files = write_local(images, labels, local_dir, n_files)
        remote = f"/tmp/bench-{uuid.uuid4().hex[:12]}"
        fs.put(local_dir, remote)
        size_tfr = sum(os.path.getsize(p) for p in local_tfr) / 2**20
        size_csv = sum(os.path.getsize(p) for p in local_csv_files) / 2**20
        print(f"data: {len(images)} records, {n_files} TFRecord files {size_tfr:.0f} MiB, {n_files} CSV files "
              f"{size_csv:.0f} MiB, written and uploaded to {fs.absolute_uri(remote)} "
              f"in {time.perf_counter() - t:.1f}s")
        try:
            configs = {
                "tfrecord local tf.data": local_tfrecord,
                "tfrecord hdfs_io": lambda: hdfs_tfrecord(True),
                "tfrecord hdfs_io verify=False": lambda: hdfs_tfrecord(False),
                "tfrecord hdfs_io DataNode stream": via_datanode(lambda: hdfs_tfrecord(True)),
            }
            if not args.no_csv:
                configs |= {
                    "csv local tf.data": local_csv,
                    "csv hdfs_io": lambda: hdfs_csv(True),
                    "csv hdfs_io verify=False": lambda: hdfs_csv(False),
                }
            results: dict[str, list[float]] = {name: [] for name in configs}
            run(local_tfrecord(), len(images))  # warm-up: page cache, TF kernels
            for _ in range(args.repeats):
                for name, make in configs.items():
                    os.environ.pop("TFOY_HDFS_SHORT_CIRCUIT", None)  # the cluster's configuration decides
                    results[name].append(run(make(), len(images)))
            med = {name: statistics.median(v) for name, v in results.items()}
            for name, values in results.items():
                print(f"{name:34s} median {med[name]:9.0f} records/s   runs: "
                      + " ".join(f"{v:.0f}" for v in values))
            bridge = tf_bridge.get()
            if bridge is not None:
                how = bridge.local_reads()
                print(f"hdfs_io ({bridge.backend} reader) files read from local replicas: {how.local_files}, through "
                      f"DataNode streams: {how.streamed_files}" + (f" (last reason: {how.last_reason})"
                                                                   if how.last_reason else ""))
            def paired(name: str, baseline: str) -> float:
                return statistics.median(h / b for h, b in zip(results[name], results[baseline], strict=True))

            print("hdfs_io / local tf.data, median of the repeats' ratios (ratio of the medians):")
            for name, baseline in [("tfrecord hdfs_io", "tfrecord local tf.data"),
                                   ("tfrecord hdfs_io DataNode stream", "tfrecord local tf.data"),
                                   ("csv hdfs_io", "csv local tf.data")]:
                if name in results:
                    print(f"  {name:34s} {paired(name, baseline):.3f} ({med[name] / med[baseline]:.3f})")
            tfrecord_ratio = paired("tfrecord hdfs_io", "tfrecord local tf.data")
            csv_ratio = paired("csv hdfs_io", "csv local tf.data") if not args.no_csv else float("nan")
        finally:
            os.environ.pop("TFOY_HDFS_SHORT_CIRCUIT", None)
            fs.delete(remote, recursive=True)
    print(f"RESULT tfrecord_ratio={tfrecord_ratio:.3f} csv_ratio={csv_ratio:.3f} "
          f"local_rps={med['tfrecord local tf.data']:.0f} hdfs_rps={med['tfrecord hdfs_io']:.0f}")


if __name__ == "__main__":
    main()
