"""tfoy's TF filesystem plugin on the real HDFS: TF's own readers streaming files through the Rust reader (and the
Python fallback), byte for byte, with seeks, across blocks, and the errors they name."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from hdfs_io import datasets, fs, native_build, tf_bridge
from hdfs_io.records import make_example, scan_frames, write_tfrecords
from tests.conftest import _site_value

pytestmark = pytest.mark.integration


@pytest.fixture
def python_reader():
    """The plugin served by the Python callbacks for one test, then by the process's own bridge again."""
    bridge = tf_bridge.Bridge(native_build.plugin_path(), None)
    try:
        yield bridge
    finally:
        tf_bridge.get().activate()


def test_setup_built_the_rust_reader():
    bridge = tf_bridge.get()
    assert bridge is not None, "the TF plugin did not load (see the warning logged by hdfs_io.tf_bridge)"
    assert bridge.backend == "rust", f"{native_build.reader_path()} missing: ./build.sh setup builds it"
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
    uri = fs.absolute_uri(f"{hdfs_tmp}/part.tfrecord")
    # written through TF's hdfs://, which only the Rust reader serves: before the Python one takes over
    write_tfrecords(uri, (make_example({"id": i, "pad": [i] * 50}) for i in range(2000)))
    bridge = request.getfixturevalue("python_reader") if reader == "python" else tf_bridge.get()
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


def _block_file(hadoop_conf, data: bytes) -> Path:
    """The DataNode's file holding this single-block content (the embedded cluster keeps it on this machine)."""
    data_dir = _site_value(hadoop_conf, "hdfs-site.xml", "dfs.datanode.data.dir") or ""
    root = Path(data_dir.removeprefix("file://"))
    if not root.is_dir():
        pytest.fail(f"dfs.datanode.data.dir={data_dir!r} is not on this machine: this test needs the embedded cluster")
    blocks = [p for p in root.rglob("blk_*") if not p.name.endswith(".meta") and p.stat().st_size == len(data)]
    for path in sorted(blocks, key=lambda p: p.stat().st_mtime, reverse=True):
        if path.read_bytes() == data:
            return path
    pytest.fail(f"no block file under {root} holds the {len(data)} bytes just written")


@pytest.mark.parametrize("reader", ["rust", "python"])
def test_replica_failing_hdfs_checksum_is_named(hadoop_conf, hdfs_tmp, reader, request):
    # a raw (CSV) stream has no record CRCs of its own: HDFS's chunk checksums are what catch a rotten replica
    bridge = request.getfixturevalue("python_reader") if reader == "python" else tf_bridge.get()
    data = np.random.default_rng(2).bytes(3 << 20)
    uri = fs.absolute_uri(f"{hdfs_tmp}/rotten.csv")
    fs.write_bytes(uri, data)
    name = bridge.name(uri, records=False)
    assert tf.io.read_file(name).numpy() == data  # the checksums pass as written
    with open(_block_file(hadoop_conf, data), "r+b") as block:
        block.seek((2 << 20) + 7)
        block.write(bytes([data[(2 << 20) + 7] ^ 0x01]))
    before = bridge.local_reads()
    with pytest.raises(tf.errors.OpError, match=f"{uri}: .*(checksum|DataNodes? failed)") as failed:
        tf.io.read_file(name).numpy()
    assert len(failed.value.message) < 600, failed.value.message  # the reason, not a dump of block locations
    if reader == "rust":  # read from the local replica first (short-circuit), which fails its checksum too
        after = bridge.local_reads()
        assert after.fallbacks == before.fallbacks + 1, after
        assert f"the local replica fails its checksum at file byte {2 << 20}" in after.last_reason, after


def test_reader_threads_yield_to_tensorflow(hdfs_tmp):
    fs.write_bytes(f"{hdfs_tmp}/a.bin", b"x" * 1000)
    bridge = tf_bridge.get()
    assert tf.io.read_file(bridge.name(fs.absolute_uri(f"{hdfs_tmp}/a.bin"), records=False)).numpy() == b"x" * 1000
    nice = {}
    for task in Path("/proc/self/task").iterdir():
        if (task / "comm").read_text().strip() == "tfoy-hdfs-io":
            nice[task.name] = int((task / "stat").read_text().rsplit(")", 1)[1].split()[16])
    assert nice and set(nice.values()) == {10}, nice  # TFOY_HDFS_READER_NICE's default


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
