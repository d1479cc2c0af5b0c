"""Short-circuit local reads by the Rust reader (hdfs_io/native/hdfs_reader/src/local.rs) on the embedded cluster,
whose DataNode allows the user running it (conf/hadoop/hdfs-site.xml.in). Every other case must keep working
through the DataNode's stream, and say why."""

from __future__ import annotations

import ctypes
import getpass
import shutil

import numpy as np
import pytest
import tensorflow as tf

from hdfs_io import datasets, fs, tf_bridge
from hdfs_io.records import make_example, write_tfrecords
from tests.conftest import _site_value

pytestmark = pytest.mark.integration


@pytest.fixture
def rust_bridge(monkeypatch):
    bridge = tf_bridge.get()
    assert bridge is not None and bridge.backend == "rust", "./build.sh setup builds the Rust reader"
    monkeypatch.delenv("TFOY_HDFS_SHORT_CIRCUIT", raising=False)
    return bridge


def _pread(bridge, uri: str, offset: int, n: int) -> bytes:
    """One read through the reader's own entry points, at any offset (TF's readers go front to back)."""
    lib, size, err = bridge._reader, ctypes.c_int64(), ctypes.create_string_buffer(1024)
    lib.tfoy_hdfs_open.restype = lib.tfoy_hdfs_read.restype = ctypes.c_int64
    handle = lib.tfoy_hdfs_open(f"tfoyraw://0/{uri}".encode(), ctypes.byref(size), err, ctypes.c_size_t(1024))
    assert handle > 0, err.value
    try:
        buf = ctypes.create_string_buffer(n)
        got = lib.tfoy_hdfs_read(ctypes.c_int64(handle), ctypes.c_uint64(offset), ctypes.c_size_t(n), buf, err,
                                 ctypes.c_size_t(1024))
        assert got >= 0, err.value
        return buf.raw[:got]
    finally:
        lib.tfoy_hdfs_close(ctypes.c_int64(handle))


def test_embedded_cluster_allows_its_user(hadoop_conf):
    assert _site_value(hadoop_conf, "hdfs-site.xml", "dfs.block.local-path-access.user") == getpass.getuser()
    assert _site_value(hadoop_conf, "hdfs-site.xml", "dfs.client.use.legacy.blockreader.local") == "true"


def test_blocks_are_read_from_local_replicas(hdfs_tmp, rust_bridge):
    data = np.random.default_rng(3).bytes((64 << 20) + 12345)  # three 32 MiB blocks, the last one short
    uri = fs.absolute_uri(f"{hdfs_tmp}/blob")
    fs.write_bytes(uri, data)
    before = rust_bridge.local_reads()
    assert tf.io.read_file(rust_bridge.name(uri, records=False)).numpy() == data
    # aligned and unaligned to the 512-byte checksum chunks, across block ends, up to and past the file's end
    for offset, n in [(0, 512), (7, 100), ((32 << 20) - 3, 10), ((32 << 20) - 600, 2000), (1 << 20, 3 << 20),
                      ((64 << 20) + 12000, 1000), (len(data), 10)]:
        assert _pread(rust_bridge, uri, offset, n) == data[offset:offset + n], (offset, n)
    after = rust_bridge.local_reads()
    assert after.local_files - before.local_files == 8, after
    assert after.streamed_files == before.streamed_files and after.fallbacks == before.fallbacks, after


def test_tfrecords_read_locally_are_the_records_written(hdfs_tmp, rust_bridge):
    uri = f"{hdfs_tmp}/part.tfrecord"
    write_tfrecords(uri, (make_example({"id": i, "pad": [i] * 30}) for i in range(3000)))
    before = rust_bridge.local_reads()
    spec = {"id": tf.io.FixedLenFeature([], tf.int64)}
    ids = [int(r["id"]) for r in datasets.tfrecord_dataset(uri).map(lambda s: tf.io.parse_single_example(s, spec))]
    assert ids == list(range(3000))
    assert rust_bridge.local_reads().local_files == before.local_files + 1


def test_switched_off_reads_through_the_datanode(hdfs_tmp, rust_bridge, monkeypatch):
    fs.write_bytes(f"{hdfs_tmp}/a.bin", b"abc" * 1000)
    uri = fs.absolute_uri(f"{hdfs_tmp}/a.bin")
    monkeypatch.setenv("TFOY_HDFS_SHORT_CIRCUIT", "0")
    before = rust_bridge.local_reads()
    assert tf.io.read_file(rust_bridge.name(uri, records=False)).numpy() == b"abc" * 1000
    after = rust_bridge.local_reads()
    assert (after.local_files, after.streamed_files) == (before.local_files, before.streamed_files + 1)


def test_client_configuration_without_short_circuit_streams(hadoop_conf, hdfs_tmp, rust_bridge, monkeypatch,
                                                            tmp_path):
    # Hadoop's keys decide, as for Hadoop's own client: a configuration without them streams
    conf = tmp_path / "conf"
    shutil.copytree(hadoop_conf, conf)
    site = conf / "hdfs-site.xml"
    site.write_text(site.read_text().replace("<name>dfs.client.read.shortcircuit</name><value>true",
                                             "<name>dfs.client.read.shortcircuit</name><value>false"))
    fs.write_bytes(f"{hdfs_tmp}/a.bin", b"x" * 5000)
    uri = fs.absolute_uri(f"{hdfs_tmp}/a.bin")
    monkeypatch.setenv("HADOOP_CONF_DIR", str(conf))
    before = rust_bridge.local_reads()
    assert tf.io.read_file(rust_bridge.name(uri, records=False)).numpy() == b"x" * 5000
    assert rust_bridge.local_reads().streamed_files == before.streamed_files + 1


def test_user_the_datanode_does_not_allow_reads_through_it(hdfs_tmp, rust_bridge, monkeypatch):
    fs.write_bytes(f"{hdfs_tmp}/a.bin", b"y" * 7000)  # readable by everyone
    uri = fs.absolute_uri(f"{hdfs_tmp}/a.bin")
    monkeypatch.setenv("HADOOP_USER_NAME", "tfoy-not-allowed")
    before = rust_bridge.local_reads()
    assert tf.io.read_file(rust_bridge.name(uri, records=False)).numpy() == b"y" * 7000
    after = rust_bridge.local_reads()
    assert after.streamed_files == before.streamed_files + 1 and after.local_files == before.local_files
    assert "does not allow local reads by 'tfoy-not-allowed'" in after.last_reason, after.last_reason
    assert "dfs.block.local-path-access.user" in after.last_reason
    # the refusal is remembered: the DataNode is not asked again for this user
    assert tf.io.read_file(rust_bridge.name(uri, records=False)).numpy() == b"y" * 7000
    assert "refused user 'tfoy-not-allowed' before" in rust_bridge.local_reads().last_reason


def test_missing_file_and_permission_errors_are_unchanged(hdfs, hdfs_tmp, rust_bridge, monkeypatch):
    # the short-circuit attempt must not swallow or reword what the NameNode says
    missing = fs.absolute_uri(f"{hdfs_tmp}/missing.bin")
    with pytest.raises(tf.errors.NotFoundError, match=f"{missing}: no such file"):
        tf.io.read_file(rust_bridge.name(missing, records=False)).numpy()
    fs.write_bytes(f"{hdfs_tmp}/secret.bin", b"s" * 100)
    hdfs.set_permission(f"{hdfs_tmp}/secret.bin", 0o600)
    monkeypatch.setenv("HADOOP_USER_NAME", "tfoy-stranger")
    secret = fs.absolute_uri(f"{hdfs_tmp}/secret.bin")
    with pytest.raises(tf.errors.PermissionDeniedError, match=f"{secret}: permission denied for HDFS user "
                                                               "'tfoy-stranger'"):
        tf.io.read_file(rust_bridge.name(secret, records=False)).numpy()
