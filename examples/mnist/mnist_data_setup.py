"""Writes MNIST-format data (default: Debian's Fashion-MNIST) to HDFS in the seed's formats.

    python -m examples.mnist.mnist_data_setup --output mnist/tfr --format tfr [--num-partitions 10] [--verify]
    python -m examples.mnist.mnist_data_setup --output mnist/csv --format csv --spark --master 'local[2]'

Output: <output>/train and <output>/test (see formats.py for each format's layout). Relative outputs land in
/user/<you>/ on the defaultFS, as with `hdfs dfs`. The whole output is written beside its final place and
renamed into it at the end, so a failed run leaves no half-written data set, and an existing output is only
replaced with --overwrite (the old one is removed only after the new one is in place).
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Iterable, Iterator

import numpy as np

from examples.argtypes import at_least
from examples.mnist import formats
from examples.mnist.idx import DEFAULT_DIR, IdxError, load_split
from hdfs_io import fs
from hdfs_io.paths import absolute_uri
from hdfs_io.publish import publish

log = logging.getLogger("mnist_data_setup")


# ---- writing without Spark (hdfs_io) ---------------------------------------------------------------------------
def _write_text(uri: str, lines: Iterable[str]) -> None:
    with fs.open(uri, "wt") as f:
        for line in lines:
            f.write(line)
            f.write("\n")


def write_split_plain(out: str, images: np.ndarray, labels: np.ndarray, fmt: str, num_partitions: int) -> None:
    from hdfs_io.records import write_tfrecords

    for part, (lo, hi) in enumerate(formats.partition_bounds(len(labels), num_partitions)):
        name = f"part-{part:05d}"
        rows = range(lo, hi)
        if fmt == "csv":
            _write_text(f"{out}/images/{name}", (formats.csv_image_line(images[i]) for i in rows))
            _write_text(f"{out}/labels/{name}", (formats.csv_label_line(labels[i]) for i in rows))
        elif fmt == "csv2":
            _write_text(f"{out}/{name}", (formats.csv2_line(images[i], labels[i]) for i in rows))
        elif fmt == "tfr":
            write_tfrecords(f"{out}/{name}.tfrecord", (formats.tf_example(images[i], labels[i]) for i in rows))
        else:
            raise SystemExit("--format pickle is Spark's SequenceFile format: add --spark")


# ---- writing with Spark (as in the seed) -----------------------------------------------------------------------
def write_split_spark(sc, out: str, images: np.ndarray, labels: np.ndarray, fmt: str, num_partitions: int) -> None:
    rdd = sc.parallelize(list(zip(images.tolist(), labels.tolist(), strict=True)), num_partitions)
    if fmt == "csv":
        rdd.map(lambda r: ",".join(map(str, r[0]))).saveAsTextFile(f"{out}/images")
        rdd.map(lambda r: formats.csv_label_line(r[1])).saveAsTextFile(f"{out}/labels")
    elif fmt == "csv2":
        rdd.map(lambda r: f"{r[1]}|{','.join(map(str, r[0]))}").saveAsTextFile(out)
    elif fmt == "pickle":
        rdd.saveAsPickleFile(out)
    else:  # tfr: each partition writes one TFRecord file through hdfs_io (no tensorflow-hadoop jar needed)

        def write_partition(index: int, rows: Iterator) -> Iterator[int]:
            from hdfs_io.records import write_tfrecords

            examples = (formats.tf_example(np.array(img, dtype=np.uint8), lab) for img, lab in rows)
            yield write_tfrecords(f"{out}/part-{index:05d}.tfrecord", examples)

        rdd.mapPartitionsWithIndex(write_partition).collect()


# ---- reading back ----------------------------------------------------------------------------------------------
def _parts(folder: str, suffix: str = "") -> list[str]:
    files = [i.uri for i in fs.ls(folder) if i.name.startswith("part-") and i.name.endswith(suffix)]
    if not files:
        raise FileNotFoundError(f"{folder}: no part-* files")
    return sorted(files)


def _lines(folder: str) -> Iterator[str]:
    for part in _parts(folder):
        with fs.open(part, "rt") as f:
            for line in f:
                if line.strip():
                    yield line.rstrip("\n")


def read_split(out: str, fmt: str, sc=None) -> Iterator[tuple[np.ndarray, int]]:
    """The records of one split, in partition order, in a common (image uint8[784], label) form."""
    if fmt == "csv":
        images = (np.array(line.split(","), dtype=np.uint8) for line in _lines(f"{out}/images"))
        labels = (formats.parse_one_hot(line) for line in _lines(f"{out}/labels"))
        yield from zip(images, labels, strict=True)
    elif fmt == "csv2":
        yield from (formats.parse_csv2_line(line) for line in _lines(out))
    elif fmt == "tfr":
        import tensorflow as tf

        from hdfs_io.datasets import tfrecord_dataset

        for record in tfrecord_dataset(_parts(out, ".tfrecord"), cycle_length=1, deterministic=True):
            yield formats.parse_tf_example(record.numpy() if isinstance(record, tf.Tensor) else record)
    else:
        if sc is None:
            raise SystemExit("reading --format pickle needs --spark")
        for img, lab in sc.pickleFile(out).collect():
            yield np.array(img, dtype=np.uint8), int(lab)


def verify_split(out: str, fmt: str, images: np.ndarray, labels: np.ndarray, sc=None) -> int:
    n = 0
    for n, (img, lab) in enumerate(read_split(out, fmt, sc), start=1):
        if n > len(labels) or lab != labels[n - 1] or not np.array_equal(img, images[n - 1]):
            raise SystemExit(f"verify: {out}: record {n - 1} differs from the source")
    if n != len(labels):
        raise SystemExit(f"verify: {out}: {n} records, the source has {len(labels)}")
    return n


# ---- main ------------------------------------------------------------------------------------------------------
def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--output", required=True, help="output folder (HDFS URI, absolute or home-relative path)")
    p.add_argument("--format", default="tfr", help=f"one of {', '.join(formats.FORMATS)} (default tfr)")
    p.add_argument("--num-partitions", "--num_partitions", type=at_least(1), default=10)
    p.add_argument("--idx-dir", default=str(DEFAULT_DIR), help=f"folder of MNIST IDX files (default {DEFAULT_DIR})")
    p.add_argument("--limit", type=at_least(0), default=0, help="write only the first N records of each split")
    p.add_argument("--spark", action="store_true", help="write with Spark (as the seed does)")
    p.add_argument("--master", default="local[2]", help="Spark master with --spark")
    p.add_argument("--read", action="store_true", help="read the output back and print counts")
    p.add_argument("--verify", action="store_true", help="read the output back and compare with the source")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output")
    args = p.parse_args(argv)
    if args.format not in formats.FORMATS:
        p.error(f"unknown --format {args.format!r}: valid formats are {', '.join(formats.FORMATS)}")
    if args.format == "pickle" and not args.spark:
        p.error("--format pickle is Spark's SequenceFile format: add --spark")
    return args


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    args = parse_args(argv)
    t0 = time.monotonic()
    output = absolute_uri(args.output)
    try:
        splits = {name: load_split(name, args.idx_dir) for name in ("train", "test")}
    except IdxError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.limit:
        splits = {k: (x[: args.limit], y[: args.limit]) for k, (x, y) in splits.items()}
    for name, (_, labels) in splits.items():
        if len(labels) < args.num_partitions:  # as sc.parallelize would: readers sharding by file get none
            log.warning("%s: %d records into %d partitions leaves %d part files empty", name, len(labels),
                        args.num_partitions, args.num_partitions - len(labels))
    if fs.exists(output) and not args.overwrite:
        print(f"error: {output} already exists: add --overwrite to replace it", file=sys.stderr)
        return 1

    sc = None
    if args.spark:
        from pyspark import SparkConf, SparkContext

        sc = SparkContext(conf=SparkConf().setMaster(args.master).setAppName("mnist_data_setup"))
    try:
        # written beside, then renamed into place (an old data set set aside first, deleted only afterwards)
        with publish(output, replace=True) as pending:
            staging = pending.tmp
            for name, (images, labels) in splits.items():
                log.info("writing %s: %d records as %s into %d partitions", name, len(labels), args.format,
                         args.num_partitions)
                if sc is not None:
                    write_split_spark(sc, f"{staging}/{name}", images, labels, args.format, args.num_partitions)
                else:
                    fs.makedirs(f"{staging}/{name}")
                    write_split_plain(f"{staging}/{name}", images, labels, args.format, args.num_partitions)
        log.info("wrote %s in %.1fs", output, time.monotonic() - t0)
        for name, (images, labels) in splits.items():
            if args.verify:
                n = verify_split(f"{output}/{name}", args.format, images, labels, sc)
                print(f"verified {output}/{name}: {n} records match the source")
            elif args.read:
                n = sum(1 for _ in read_split(f"{output}/{name}", args.format, sc))
                print(f"read {output}/{name}: {n} records")
    finally:
        if sc is not None:
            sc.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
