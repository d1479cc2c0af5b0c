"""The seed's MNIST data formats, as pure functions from arrays to records (and back, for --verify).

csv   train/images/part-* (784 comma-separated pixels) and train/labels/part-* (one-hot, 10 values)
csv2  train/part-*: "label|p0,p1,...,p783"
tfr   train/part-*.tfrecord: tf.train.Example with int64 image[784] and int64 label (the class index)
pickle  Spark's saveAsPickleFile of (image, label) tuples (Spark only: it is a Hadoop SequenceFile)
"""

from __future__ import annotations

import numpy as np

FORMATS = ("csv", "csv2", "pickle", "tfr")
NUM_CLASSES = 10


def csv_image_line(image: np.ndarray) -> str:
    return ",".join(map(str, image.tolist()))


def csv_label_line(label: int) -> str:
    one_hot = [0] * NUM_CLASSES
    one_hot[int(label)] = 1
    return ",".join(map(str, one_hot))


def csv2_line(image: np.ndarray, label: int) -> str:
    return f"{int(label)}|{csv_image_line(image)}"


def parse_csv2_line(line: str) -> tuple[np.ndarray, int]:
    label, pixels = line.split("|", 1)
    return np.array(pixels.split(","), dtype=np.uint8), int(label)


def parse_one_hot(line: str) -> int:
    values = [int(v) for v in line.split(",")]
    if len(values) != NUM_CLASSES or sum(values) != 1:
        raise ValueError(f"not a one-hot label of {NUM_CLASSES} values: {line[:60]!r}")
    return values.index(1)


def tf_example(image: np.ndarray, label: int) -> bytes:
    import tensorflow as tf

    feature = {
        "image": tf.train.Feature(int64_list=tf.train.Int64List(value=image.astype(np.int64).tolist())),
        "label": tf.train.Feature(int64_list=tf.train.Int64List(value=[int(label)])),
    }
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


def parse_tf_example(serialized: bytes) -> tuple[np.ndarray, int]:
    import tensorflow as tf

    example = tf.train.Example.FromString(serialized)
    image = np.array(example.features.feature["image"].int64_list.value, dtype=np.uint8)
    return image, int(example.features.feature["label"].int64_list.value[0])


def tf_feature_spec() -> dict:
    """For tf.io.parse_example on the tfr format (batched parsing in C++)."""
    import tensorflow as tf

    return {
        "image": tf.io.FixedLenFeature([784], tf.int64),
        "label": tf.io.FixedLenFeature([], tf.int64),
    }


def partition_bounds(n: int, num_partitions: int) -> list[tuple[int, int]]:
    """Contiguous [start, end) ranges, sizes differing by at most one (as sc.parallelize slices)."""
    if num_partitions < 1:
        raise ValueError(f"--num-partitions must be >= 1, not {num_partitions}")
    return [(n * i // num_partitions, n * (i + 1) // num_partitions) for i in range(num_partitions)]
