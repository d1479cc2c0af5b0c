"""TensorFlow's own APIs on hdfs:// against local disk, side by side in one run (hdfs_io's plugin, no hdfs_io call).

(a) read: plain `tf.data.TFRecordDataset` over the hdfs:// files vs the same files on local disk: 60,000
    Fashion-MNIST tf.Examples (784 int64 pixels + label) in 4 files, the same pipeline on both sides (interleave
    over the files, batch 256, parse_example, prefetch), as benchmarks/hdfs_read.py builds it.
(b) write: `model.save(".keras")` and a `tf.train.Checkpoint` of a Keras model with ≥ 50 MB of weights, to hdfs://
    vs to a local folder.
Each configuration runs `--repeats` times, alternating, local first in odd repeats and hdfs first in even ones; a
ratio is the median of the repeats' paired ratios (each hdfs run against the local run of the same repeat; see
hdfs_read.py for why). Each timed write starts with the earlier writes' dirty pages written back (`os.sync`).
read_ratio: hdfs records/s over local records/s; write_ratio: local seconds over hdfs seconds (both ≥ 1 would mean
HDFS is faster). For scale, Hadoop's own client writes the same files too (`hdfs dfs -put`, when `hdfs` is on PATH).
`--prefault-gib N` first touches N GiB of fresh memory and frees it: on a VM whose balloon reports free pages to
the host (virtio-balloon free page reporting), memory the host has taken back costs ~10 µs per 4 KiB page at its
next first touch, and which side of a pair meets such pages is chance; touched first, both sides run on memory the
host backs, for a while. The cost measured per GiB is printed.
Last line: `RESULT read_ratio=… write_ratio=…`.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import hdfs_io  # noqa: E402,F401 - registers hdfs:// with TensorFlow
from benchmarks.hdfs_read import BATCH, load_fashion_mnist, run, write_local  # noqa: E402
from hdfs_io import fs  # noqa: E402


def paired(hdfs: list[float], local: list[float]) -> float:
    return statistics.median(h / b for h, b in zip(hdfs, local, strict=True))


def prefault(gib: int) -> float:
    """Touches `gib` GiB of fresh anonymous memory page by page, frees it; seconds per GiB."""
    import mmap

    t = time.perf_counter()
    blocks = []
    for _ in range(gib):
        block = mmap.mmap(-1, 1 << 30)
        for offset in range(0, 1 << 30, mmap.PAGESIZE):
            block[offset] = 1
        blocks.append(block)
    for block in blocks:
        block.close()
    return (time.perf_counter() - t) / gib


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=11)
    parser.add_argument("--files", type=int, default=4)
    parser.add_argument("--prefault-gib", type=int, default=0)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    import keras
    import tensorflow as tf

    spec = {"image": tf.io.FixedLenFeature([784], tf.int64), "label": tf.io.FixedLenFeature([], tf.int64)}

    def pipeline(files: list[str]):
        ds = tf.data.Dataset.from_tensor_slices(files).interleave(
            lambda f: tf.data.TFRecordDataset(f, buffer_size=1 << 20), cycle_length=min(len(files), 4),
            num_parallel_calls=tf.data.AUTOTUNE)
        return ds.batch(BATCH).map(lambda s: tf.io.parse_example(s, spec),
                                   num_parallel_calls=tf.data.AUTOTUNE).prefetch(2)

    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((2048,)), keras.layers.Dense(4096), keras.layers.Dense(2048),
                              keras.layers.Dense(10)])
    weights_mb = sum(int(v.numpy().nbytes) for v in model.weights) / 1e6
    checkpoint = tf.train.Checkpoint(model=model)

    parts: dict[tuple[str, str], list[float]] = {}  # (part, side) -> seconds, to show where a write's time goes

    def save(base: str, n: int, side: str = "") -> float:
        if side:  # the earlier runs' dirty pages written back first, on both sides alike (not timed), so that no
            os.sync()  # run pays for the writeback of the ones before it
        t = time.perf_counter()
        tf.io.gfile.makedirs(base)
        model.save(f"{base}/m{n}.keras")
        saved = time.perf_counter()
        checkpoint.write(f"{base}/ckpt{n}/ckpt")
        end = time.perf_counter()
        if side:
            parts.setdefault(("model.save", side), []).append(saved - t)
            parts.setdefault(("Checkpoint", side), []).append(end - saved)
        return end - t

    def save_staged(base: str, n: int) -> float:
        """What hdfs_io's helpers did before TF could write hdfs://: save locally, upload, rename into place."""
        os.sync()
        t = time.perf_counter()
        with tempfile.TemporaryDirectory(prefix="tf-hdfs-stage-") as stage:
            save(stage, n)
            fs.put(stage, f"{base}/staged-{n}")  # beside the target, then renamed in
        return time.perf_counter() - t

    def java_put(local: str, remote_dir: str) -> float:
        """Hadoop's own client (`hdfs dfs -put`) writing the same files: what this cluster takes from any client.
        The JVM's start is taken out by timing a put of an empty file in the same way."""
        def put(*paths: str) -> float:
            t = time.perf_counter()
            subprocess.run(["hdfs", "dfs", "-put", "-f", *paths, remote_dir], check=True, capture_output=True)
            return time.perf_counter() - t
        empty = Path(local_dir) / "empty"
        empty.touch()
        return put(*local) - put(str(empty))

    def close_latency(base: str) -> float:
        t = time.perf_counter()
        for i in range(5):
            with tf.io.gfile.GFile(f"{base}/small-{i}", "wb") as f:
                f.write(b"x")
        return (time.perf_counter() - t) / 5

    remote = fs.absolute_uri(f"/tmp/bench-tf-{uuid.uuid4().hex[:12]}")
    local_dir = tempfile.mkdtemp(prefix="tf-hdfs-bench-")
    try:
        t = time.perf_counter()
        images, labels = load_fashion_mnist()
        local_tfr, _ = write_local(images, labels, local_dir, args.files)
        tf.io.gfile.makedirs(f"{remote}/data")
        for path in local_tfr:  # uploaded with TF's own copy, like a user would
            tf.io.gfile.copy(path, f"{remote}/data/{os.path.basename(path)}")
        remote_tfr = sorted(tf.io.gfile.glob(f"{remote}/data/*.tfrecord"))
        print(f"data: {len(images)} records in {args.files} files "
              f"({sum(os.path.getsize(p) for p in local_tfr) / 2**20:.0f} MiB) at {remote}/data, "
              f"{time.perf_counter() - t:.1f}s; model {weights_mb:.0f} MB of weights")
        if args.prefault_gib:
            print(f"first touch of fresh memory: {prefault(args.prefault_gib):.2f} s per GiB "
                  f"({args.prefault_gib} GiB, then freed)")
        run(pipeline(local_tfr), len(images))  # warm-up: page cache, TF kernels
        save(f"{local_dir}/save", 0)
        save(f"{remote}/save", 0)
        reads: dict[str, list[float]] = {"local": [], "hdfs": []}
        writes: dict[str, list[float]] = {"local": [], "hdfs": [], "hdfs staged": []}
        for i in range(1, args.repeats + 1):
            # which side goes first alternates: a save straight after another one took longer (0.09 -> 0.24 s for
            # the same local model.save), so a fixed order favours the side that goes first
            sides = [("local", local_tfr, local_dir), ("hdfs", remote_tfr, remote)][::1 if i % 2 else -1]
            for side, files, _ in sides:
                reads[side].append(run(pipeline(files), len(images)))
            for side, _, base in sides:
                writes[side].append(save(f"{base}/save", i, side))
            writes["hdfs staged"].append(save_staged(f"{remote}/save", i))
        saved = [f"{local_dir}/save/m1.keras", f"{local_dir}/save/ckpt1"]
        tf.io.gfile.makedirs(f"{remote}/java")
        java = [java_put(saved, f"{remote}/java") for _ in range(3)] if shutil.which("hdfs") else []
        hdfs_bytes = sum(tf.io.gfile.stat(f"{remote}/save/{n}").length for n in ("m1.keras",))
        for name, values in reads.items():
            print(f"read  {name:5s} median {statistics.median(values):9.0f} records/s  runs: "
                  + " ".join(f"{v:.0f}" for v in values))
        for name, values in writes.items():
            print(f"write {name:11s} median {statistics.median(values):9.3f} s (model.save + Checkpoint)  runs: "
                  + " ".join(f"{v:.2f}" for v in values))
        print("write parts, medians: " + "; ".join(
            f"{part} hdfs {statistics.median(parts[part, 'hdfs']):.3f} s, local "
            f"{statistics.median(parts[part, 'local']):.3f} s" for part in ("model.save", "Checkpoint")))
        if java:
            print(f"write hdfs dfs -put   median {statistics.median(java):9.3f} s (the same files; Hadoop's Java "
                  f"client, JVM start taken out)  runs: " + " ".join(f"{v:.2f}" for v in java))
        print(f"closing one small file on HDFS: {close_latency(f'{remote}/save'):.3f} s (local: "
              f"{close_latency(f'{local_dir}/save'):.4f} s)")
        print(f"write: TF straight to hdfs:// over local + upload, paired median "
              f"{paired(writes['hdfs staged'], writes['hdfs']):.2f}x as fast")
        read_ratio = paired(reads["hdfs"], reads["local"])
        write_ratio = paired(writes["local"], writes["hdfs"])
        print(f"model.keras on HDFS: {hdfs_bytes / 1e6:.0f} MB; ratios of medians: read "
              f"{statistics.median(reads['hdfs']) / statistics.median(reads['local']):.3f}, write "
              f"{statistics.median(writes['local']) / statistics.median(writes['hdfs']):.3f}")
    finally:
        shutil.rmtree(local_dir, ignore_errors=True)
        if tf.io.gfile.exists(remote):
            tf.io.gfile.rmtree(remote)
    print(f"RESULT read_ratio={read_ratio:.3f} write_ratio={write_ratio:.3f}")


if __name__ == "__main__":
    main()
