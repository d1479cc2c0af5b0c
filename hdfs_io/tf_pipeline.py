"""The tf.data pieces every way of reading shares: the files as a dataset, reading them side by side, and a step
that runs Python once a file's elements are done (to check or explain it, or to remove its staged copy).

Every Python step here is per file, never per record: per-record work stays in TF's C++ readers.
"""

from __future__ import annotations

from typing import Any


def names_dataset(names: list[Any], shuffle: bool, seed: int | None) -> Any:
    """The files as a dataset; with shuffle, their order changes each epoch (seeded)."""
    import tensorflow as tf

    ds = tf.data.Dataset.from_tensor_slices(names)
    if shuffle and len(names) > 1:
        ds = ds.shuffle(len(names), seed=seed, reshuffle_each_iteration=True)
    return ds


def interleave(ds: Any, reader: Any, cycle_length: int, block_length: int, deterministic: bool | None) -> Any:
    """Files read side by side, with AUTOTUNE parallelism: faster than one thread per file in the benchmark
    (docs/hdfs_io.md, Performance)."""
    import tensorflow as tf

    return ds.interleave(reader, cycle_length=cycle_length, block_length=block_length,
                         num_parallel_calls=tf.data.AUTOTUNE, deterministic=deterministic)


def then(fn: Any, args: list[Any], like: Any) -> Any:
    """An empty dataset shaped like `like` that calls the Python function fn(*args) when it is reached."""
    import tensorflow as tf

    call = tf.data.Dataset.from_tensors(args[0]).map(lambda _: tf.py_function(fn, args, tf.string))
    return call.filter(lambda _: False).flat_map(lambda _: like.take(0))
