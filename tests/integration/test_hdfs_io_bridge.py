"""tfoy's TF filesystem plugin on the real HDFS: TF's own readers streaming files through the Rust reader (and the
Python fallback), byte for byte, with seeks, across blocks, and the errors they name."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from hdfs_io import datasets, fs, tf_bridge
from hdfs_io.records import make_example, scan_frames, write_tfrecords

pytestmark = pytest.mark.integration


@pytest.fixture
def python_reader():
    """The plugin served by the Python callbacks for one test, then by the process's own bridge again."""
    bridge = tf_bridge.Bridge(tf_bridge.plugin_path(), None)
    try:
        yield bridge
    finally:
        tf_bridge.get().activate()


def test_setup_built_the_rust_reader():
    bridge = tf_bridge.get()
    assert bridge is not None, "the TF plugin did not load (see the warning logged by hdfs_io.tf_bridge)"
    assert bridge.backend == "rust", f"{tf_bridge.reader_path()} missing: ./build.sh setup builds it"
    assert {"tfoyraw", "tfoyrec"} <= set(tf.io.gfile.get_registered_schemes())


@pytest.mark.parametrize("reader", ["rust", "python"])
def test_bytes_across_blocks_and_seeks(hdfs_tmp, reader, request):
    bridge = request.getfixturevalue("python_reader") if reader == "python" else tf_bridge.get()
    data = np.random.default_rng(1).bytes(40 << 20)  # more than one 32 MiB block of the embedded HDFS
    uri = fs.absolute_uri(f"{hdfs_tmp}/blob")
    fs.write_bytes(uri, data)
    name = bridge.name(uri, records=False)
    assert tf.io.read_file(name).numpy() == data
    with tf.io.gfile.GFile(name, "rb") as f:  # TF's buffered file: seeks back and forth
        for offset in (33 << 20, 5, (32 << 20) - 3, len(data) - 10):
            f.seek(offset)
            assert f.read(1000) == data[offset:offset + 1000]
    assert tf.io.gfile.stat(name).length == len(data)


@pytest.mark.parametrize("reader", ["rust", "python"])
def test_tfrecords_stream_and_corruption_is_named(hdfs_tmp, reader, request):
    bridge = request.getfixturevalue("python_reader") if reader == "python" else tf_bridge.get()
    uri = fs.absolute_uri(f"{hdfs_tmp}/part.tfrecord")
    write_tfrecords(uri, (make_example({"id": i, "pad": [i] * 50}) for i in range(2000)))
    stats = datasets.ReadStats()
    ids = [int(tf.io.parse_single_example(r, {"id": tf.io.FixedLenFeature([], tf.int64)})["id"])
           for r in tf.data.TFRecordDataset(bridge.name(uri, True, stats), buffer_size=1 << 16)]
    assert ids == list(range(2000))
    del ids
    assert stats.files_streamed == 1 and stats.bytes_streamed == fs.stat(uri).size
    data = bytearray(fs.read_bytes(uri))
    frames, error = scan_frames(memoryview(bytes(data)), uri)
    assert error is None and len(frames) == 2000
    data[frames[1500].offset + 40] ^= 0x10
    fs.write_bytes(uri, bytes(data))
    expected = f"{uri}: corrupt TFRecord at byte offset {frames[1500].offset}: data checksum mismatch"
    with pytest.raises(tf.errors.DataLossError, match=expected):
        for _ in tf.data.TFRecordDataset(bridge.name(uri, True), buffer_size=1 << 16):
            pass


def test_file_gone_after_listing_is_named(hdfs_tmp):
    write_tfrecords(f"{hdfs_tmp}/a.tfrecord", [make_example({"id": 1})])
    ds = datasets.tfrecord_dataset(f"{hdfs_tmp}/*.tfrecord")
    fs.delete(f"{hdfs_tmp}/a.tfrecord")
    with pytest.raises(tf.errors.NotFoundError, match=f"{fs.absolute_uri(hdfs_tmp)}/a.tfrecord: no such file"):
        list(ds)


def test_csv_read_errors_are_not_ignored_with_bad_lines(hdfs_tmp):
    # checked CSV ignores TF's decode errors to count rows; a file it cannot read must still fail, named
    fs.write_bytes(f"{hdfs_tmp}/a.csv", b"a,b\n1,2\n")
    ds = datasets.csv_dataset(f"{hdfs_tmp}/*.csv", [tf.int32, tf.int32])
    fs.delete(f"{hdfs_tmp}/a.csv")
    with pytest.raises(tf.errors.OpError, match=f"{fs.absolute_uri(hdfs_tmp)}/a.csv: no such file"):
        list(ds)


READ_AS_NOBODY = """
import sys
import tensorflow as tf
from hdfs_io import datasets
try:
    list(datasets.tfrecord_dataset(sys.argv[1]))
    print("NO ERROR")
except tf.errors.PermissionDeniedError as exc:
    print("PermissionDenied", exc.message)
"""


def test_permission_denied_names_path_and_user(hdfs, hdfs_tmp):
    uri = fs.absolute_uri(f"{hdfs_tmp}/secret.tfrecord")
    write_tfrecords(uri, [make_example({"id": 1})])
    hdfs.set_permission(f"{hdfs_tmp}/secret.tfrecord", 0o600)
    env = {**os.environ, "HADOOP_USER_NAME": "nobody"}
    done = subprocess.run([sys.executable, "-c", READ_AS_NOBODY, uri], env=env, capture_output=True, text=True,
                          timeout=180)
    out = done.stdout.strip().splitlines()
    assert len(out) == 1 and out[0].startswith("PermissionDenied"), done.stdout + done.stderr[-2000:]
    assert f"{uri}: permission denied for HDFS user 'nobody' (user=nobody, access=READ" in out[0], out[0]
