"""TensorFlow's and Keras's own APIs on hdfs:// and viewfs:// of the real cluster, through hdfs_io's plugin.

Nothing here calls hdfs_io to read or write: the point is that ordinary TF code runs unchanged once `hdfs_io` is
imported. A plain hdfs-native client checks what landed on HDFS.
"""

from __future__ import annotations

import gzip
import json
import os
import re
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

import hdfs_io  # noqa: F401 - registers hdfs:// and viewfs:// with TensorFlow when it is imported
from hdfs_io.paths import default_fs

pytestmark = pytest.mark.integration


def uri(path: str) -> str:
    return f"{default_fs()}{path}"


def _keras_model(seed: int = 1):
    import keras

    keras.utils.set_random_seed(seed)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(8, activation="relu"), keras.layers.Dense(2)])
    model.compile(optimizer="adam", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return model


X = np.random.default_rng(0).normal(size=(64, 4)).astype("float32")
Y = (X.sum(axis=1) > 0).astype("int32")


def test_schemes_registered_by_importing_hdfs_io():
    schemes = tf.io.gfile.get_registered_schemes()
    assert "hdfs" in schemes and "viewfs" in schemes


def test_gfile_operations(hdfs, hdfs_tmp):
    base = uri(hdfs_tmp)
    gfile = tf.io.gfile
    gfile.makedirs(f"{base}/a/b/c")
    assert gfile.isdir(f"{base}/a/b/c") and gfile.exists(f"{base}/a/b")
    with gfile.GFile(f"{base}/a/t.txt", "w") as f:
        f.write("héllo\nwörld\n")
    payload = os.urandom(5 * (1 << 20) + 3)  # more than one write chunk
    with gfile.GFile(f"{base}/a/bin.dat", "wb") as f:
        f.write(payload[:100])
        f.write(payload[100:])
    assert hdfs.get_file_info(f"{hdfs_tmp}/a/bin.dat").length == len(payload)
    with gfile.GFile(f"{base}/a/t.txt") as f:
        assert f.read() == "héllo\nwörld\n"
    with gfile.GFile(f"{base}/a/bin.dat", "rb") as f:
        f.seek(1 << 20)
        assert f.read(10) == payload[1 << 20:(1 << 20) + 10]
    assert gfile.GFile(f"{base}/a/bin.dat", "rb").read() == payload
    with gfile.GFile(f"{base}/a/t.txt", "a") as f:
        f.write("more\n")
    assert gfile.GFile(f"{base}/a/t.txt").read().endswith("wörld\nmore\n")
    assert sorted(gfile.listdir(f"{base}/a")) == ["b", "bin.dat", "t.txt"]
    assert gfile.glob(f"{base}/a/*.txt") == [f"{base}/a/t.txt"]
    assert gfile.glob(f"{base}/*/b") == [f"{base}/a/b"]
    st = gfile.stat(f"{base}/a/bin.dat")
    assert st.length == len(payload) and not st.is_directory and st.mtime_nsec > 0
    walked = {root: (sorted(dirs), sorted(files)) for root, dirs, files in gfile.walk(base)}
    assert walked[f"{base}/a"] == (["b"], ["bin.dat", "t.txt"]) and walked[f"{base}/a/b/c"] == ([], [])
    gfile.copy(f"{base}/a/t.txt", f"{base}/copy.txt")
    with pytest.raises(tf.errors.AlreadyExistsError):
        gfile.copy(f"{base}/a/t.txt", f"{base}/copy.txt")
    gfile.copy(f"{base}/a/bin.dat", f"{base}/copy.txt", overwrite=True)
    assert gfile.stat(f"{base}/copy.txt").length == len(payload)
    gfile.rename(f"{base}/copy.txt", f"{base}/moved.txt")
    with pytest.raises(tf.errors.AlreadyExistsError):
        gfile.rename(f"{base}/a/t.txt", f"{base}/moved.txt")
    gfile.rename(f"{base}/a/t.txt", f"{base}/moved.txt", overwrite=True)  # one NameNode rename with OVERWRITE
    assert gfile.GFile(f"{base}/moved.txt").read().startswith("héllo") and not gfile.exists(f"{base}/a/t.txt")
    gfile.remove(f"{base}/moved.txt")
    assert not gfile.exists(f"{base}/moved.txt")
    with pytest.raises(tf.errors.FailedPreconditionError):
        gfile.remove(f"{base}/a")  # a directory is not a file
    gfile.rmtree(f"{base}/a")
    assert gfile.listdir(base) == []
    # a path with empty and "." components is cleaned, as TF does for its other filesystems
    gfile.makedirs(f"{base}//x/./y")
    assert gfile.isdir(f"{base}/x/y")


def test_writes_appear_whole_at_close_under_the_target_name(hdfs, hdfs_tmp):
    target = uri(f"{hdfs_tmp}/model.bin")
    with tf.io.gfile.GFile(target, "wb") as f:
        f.write(b"old")
    f = tf.io.gfile.GFile(target, "wb")
    f.write(b"new content")
    f.flush()
    assert tf.io.gfile.GFile(target, "rb").read() == b"old"  # not until close
    hidden = [s.path for s in hdfs.list_status(hdfs_tmp) if s.path.rsplit("/", 1)[1].startswith(".")]
    assert len(hidden) == 1 and ".model.bin.tfoy-tmp-" in hidden[0]
    f.close()
    assert tf.io.gfile.GFile(target, "rb").read() == b"new content"
    assert tf.io.gfile.listdir(uri(hdfs_tmp)) == ["model.bin"]  # no temporary left


def _records(n: int) -> list[bytes]:
    return [tf.train.Example(features=tf.train.Features(feature={
        "x": tf.train.Feature(int64_list=tf.train.Int64List(value=[i, i * 2])),
        "label": tf.train.Feature(int64_list=tf.train.Int64List(value=[i % 10]))})).SerializeToString()
        for i in range(n)]


def test_tf_data_readers_and_tfrecord_writer(hdfs_tmp):
    base = uri(hdfs_tmp)
    recs = _records(500)
    for part in range(3):
        with tf.io.TFRecordWriter(f"{base}/data/part-{part:05d}.tfrecord") as w:
            for r in recs[part::3]:
                w.write(r)
    with tf.io.TFRecordWriter(f"{base}/gz/part-00000.tfrecord.gz", options="GZIP") as w:
        for r in recs:
            w.write(r)
    files = tf.io.gfile.glob(f"{base}/data/part-*")
    assert len(files) == 3
    got = list(tf.data.TFRecordDataset(files).as_numpy_iterator())
    assert sorted(got) == sorted(recs)
    gz = list(tf.data.TFRecordDataset(f"{base}/gz/part-00000.tfrecord.gz", compression_type="GZIP")
              .as_numpy_iterator())
    assert gz == recs
    listed = sorted(tf.data.Dataset.list_files(f"{base}/data/part-*", shuffle=False).as_numpy_iterator())
    assert [p.decode() for p in listed] == sorted(files)
    parsed = tf.data.TFRecordDataset(files).map(lambda r: tf.io.parse_single_example(r, {
        "x": tf.io.FixedLenFeature([2], tf.int64), "label": tf.io.FixedLenFeature([], tf.int64)})).batch(100)
    assert sum(int(b["x"].shape[0]) for b in parsed) == 500

    lines = "".join(f"{i},{i * 0.5},name{i}\n" for i in range(200))
    with tf.io.gfile.GFile(f"{base}/csv/a.csv", "w") as f:
        f.write(lines)
    text = list(tf.data.TextLineDataset(f"{base}/csv/a.csv").as_numpy_iterator())
    assert len(text) == 200 and text[3] == b"3,1.5,name3"
    csv = tf.data.experimental.CsvDataset(f"{base}/csv/a.csv", [tf.int32, tf.float32, tf.string])
    rows = list(csv.as_numpy_iterator())
    assert len(rows) == 200 and rows[7] == (7, 3.5, b"name7")
    # gzip text written by hand, read by TF
    with tf.io.gfile.GFile(f"{base}/csv/b.csv.gz", "wb") as f:
        f.write(gzip.compress(lines.encode()))
    assert len(list(tf.data.TextLineDataset(f"{base}/csv/b.csv.gz", compression_type="GZIP"))) == 200


def test_keras_saving_and_checkpoint_callbacks(hdfs_tmp):
    import keras

    base = uri(hdfs_tmp)
    model = _keras_model()
    callbacks = [
        keras.callbacks.ModelCheckpoint(f"{base}/ckpt/w-{{epoch:02d}}.weights.h5", save_weights_only=True),
        keras.callbacks.ModelCheckpoint(f"{base}/ckpt/m-{{epoch:02d}}.keras"),
        keras.callbacks.TensorBoard(log_dir=f"{base}/tb"),
    ]
    model.fit(X, Y, epochs=2, batch_size=16, verbose=0, callbacks=callbacks)
    assert sorted(tf.io.gfile.listdir(f"{base}/ckpt")) == ["m-01.keras", "m-02.keras", "w-01.weights.h5",
                                                            "w-02.weights.h5"]
    expected = model.predict(X[:4], verbose=0)
    np.testing.assert_allclose(keras.models.load_model(f"{base}/ckpt/m-02.keras").predict(X[:4], verbose=0),
                               expected, rtol=1e-5)
    other = _keras_model(seed=7)
    other.load_weights(f"{base}/ckpt/w-02.weights.h5")
    np.testing.assert_allclose(other.predict(X[:4], verbose=0), expected, rtol=1e-5)
    model.save(f"{base}/final.keras")
    np.testing.assert_allclose(keras.models.load_model(f"{base}/final.keras").predict(X[:4], verbose=0), expected,
                               rtol=1e-5)
    # the TensorBoard callback's event files, read back as TensorBoard would
    events = tf.io.gfile.glob(f"{base}/tb/train/events.out.tfevents.*")
    assert len(events) == 1
    tags = {v.tag for e in tf.compat.v1.train.summary_iterator(events[0]) for v in e.summary.value}
    assert "epoch_loss" in tags


def test_a_keras_save_streams_to_hdfs_and_one_that_fails_half_way_keeps_the_previous_file(hdfs_tmp, monkeypatch):
    """model.save(".keras") on hdfs:// goes through hdfs_io.keras_save (zip streamed into a GFile, published by a
    rename) rather than Keras's whole-archive BytesIO; a save that raises mid-archive leaves the old file."""
    import keras
    from keras.src.saving import saving_lib

    assert getattr(saving_lib.save_model, "_tfoy_streamed", False)
    base = uri(hdfs_tmp)
    model = _keras_model()
    model.save(f"{base}/m.keras")
    expected = model.predict(X[:4], verbose=0)
    size = tf.io.gfile.stat(f"{base}/m.keras").length

    def broken(self, store):
        raise RuntimeError("disk full, say")

    model.layers[0].kernel.assign(model.layers[0].kernel * 2)  # a different model that must not land
    monkeypatch.setattr(keras.layers.Dense, "save_own_variables", broken)
    with pytest.raises(RuntimeError, match="disk full"):
        model.save(f"{base}/m.keras")
    monkeypatch.undo()
    assert tf.io.gfile.listdir(base) == ["m.keras"]  # no temporary left beside it
    assert tf.io.gfile.stat(f"{base}/m.keras").length == size
    np.testing.assert_allclose(keras.models.load_model(f"{base}/m.keras").predict(X[:4], verbose=0), expected,
                               rtol=1e-5)


def test_tf_checkpoint_manager_and_saved_model(hdfs_tmp):
    base = uri(hdfs_tmp)
    model = _keras_model()
    model.fit(X, Y, epochs=1, verbose=0)
    ckpt = tf.train.Checkpoint(model=model, optimizer=model.optimizer)
    manager = tf.train.CheckpointManager(ckpt, f"{base}/tfckpt", max_to_keep=2)
    for _ in range(3):
        manager.save()
    assert manager.checkpoints == [f"{base}/tfckpt/ckpt-2", f"{base}/tfckpt/ckpt-3"]
    assert tf.train.latest_checkpoint(f"{base}/tfckpt") == f"{base}/tfckpt/ckpt-3"
    assert not tf.io.gfile.glob(f"{base}/tfckpt/ckpt-1*")  # pruned
    fresh = _keras_model(seed=9)
    fresh.fit(X, Y, epochs=1, verbose=0)  # builds the optimizer's variables
    tf.train.Checkpoint(model=fresh, optimizer=fresh.optimizer).restore(manager.latest_checkpoint).assert_consumed()
    np.testing.assert_allclose(fresh.predict(X[:4], verbose=0), model.predict(X[:4], verbose=0), rtol=1e-5)

    model.export(f"{base}/export/1", verbose=False)
    served = tf.saved_model.load(f"{base}/export/1")
    np.testing.assert_allclose(served.serve(X[:4]).numpy(), model.predict(X[:4], verbose=0), rtol=1e-5)

    class Doubler(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None], tf.float32)])
        def __call__(self, x):
            return 2 * x

    tf.saved_model.save(Doubler(), f"{base}/sm")
    assert {"saved_model.pb", "variables"} <= set(tf.io.gfile.listdir(f"{base}/sm"))
    np.testing.assert_allclose(tf.saved_model.load(f"{base}/sm")(tf.constant([1.5])).numpy(), [3.0])


def test_viewfs_mount_table(hdfs_tmp, hadoop_conf, tmp_path, monkeypatch):
    """A client configuration with a viewfs mount table: TF's names on viewfs:// reach the HDFS folder."""
    conf = tmp_path / "conf"
    conf.mkdir()
    (conf / "hdfs-site.xml").write_text((hadoop_conf / "hdfs-site.xml").read_text())
    core = (hadoop_conf / "core-site.xml").read_text()
    # hdfs-native needs a fallback link in every mount table
    link = (f"<property><name>fs.viewfs.mounttable.tfoytest.link./mnt</name><value>{uri(hdfs_tmp)}</value>"
            f"</property><property><name>fs.viewfs.mounttable.tfoytest.linkFallback</name><value>{uri('/')}"
            "</value></property>\n</configuration>")
    (conf / "core-site.xml").write_text(core.replace("</configuration>", link))
    monkeypatch.setenv("HADOOP_CONF_DIR", str(conf))
    tf.io.gfile.makedirs("viewfs://tfoytest/mnt/v")
    with tf.io.gfile.GFile("viewfs://tfoytest/mnt/v/f.txt", "w") as f:
        f.write("through viewfs")
    assert tf.io.gfile.listdir("viewfs://tfoytest/mnt/v") == ["f.txt"]
    monkeypatch.setenv("HADOOP_CONF_DIR", str(hadoop_conf))
    assert tf.io.gfile.GFile(uri(f"{hdfs_tmp}/v/f.txt")).read() == "through viewfs"


def _conf_with(hadoop_conf: Path, folder: Path, **settings: str) -> Path:
    """A copy of the client configuration with some hdfs-site.xml properties set (dfs_blocksize -> dfs.blocksize)."""
    folder.mkdir()
    (folder / "core-site.xml").write_text((hadoop_conf / "core-site.xml").read_text())
    site = (hadoop_conf / "hdfs-site.xml").read_text()
    for key, value in settings.items():
        name = key.replace("_", ".")
        site = re.sub(rf"\s*<property><name>{re.escape(name)}</name>.*?</property>", "", site)
        site = site.replace("</configuration>", f"<property><name>{name}</name><value>{value}</value></property>\n"
                                                "</configuration>")
    (folder / "hdfs-site.xml").write_text(site)
    return folder


def test_client_block_size_and_replication_govern_new_files(hdfs, hdfs_tmp, hadoop_conf, tmp_path, monkeypatch):
    """As with Hadoop's Java client, the client configuration's dfs.blocksize and dfs.replication decide how a new
    file is stored, for TF's writes and hdfs_io's own alike (hdfs-native alone takes the NameNode's defaults: 32 MiB
    and 1 on the embedded cluster)."""
    from hdfs_io import fs

    data = bytes(range(256)) * (10 << 10)  # 2.5 MiB: three blocks of 1 MiB
    monkeypatch.setenv("HADOOP_CONF_DIR", str(_conf_with(hadoop_conf, tmp_path / "c1", dfs_blocksize="1m",
                                                         dfs_replication="2")))
    with tf.io.gfile.GFile(uri(f"{hdfs_tmp}/tf.bin"), "wb") as f:
        f.write(data)
    fs.write_bytes(uri(f"{hdfs_tmp}/py.bin"), data)
    monkeypatch.setenv("HADOOP_CONF_DIR", str(_conf_with(hadoop_conf, tmp_path / "c2", dfs_blocksize="2097152")))
    with tf.io.gfile.GFile(uri(f"{hdfs_tmp}/tf2.bin"), "wb") as f:
        f.write(data)
    for name, blocksize, replication in [("tf.bin", 1 << 20, 2), ("py.bin", 1 << 20, 2), ("tf2.bin", 2 << 20, 1)]:
        st = hdfs.get_file_info(f"{hdfs_tmp}/{name}")
        assert (st.blocksize, st.replication, st.length) == (blocksize, replication, len(data)), name
    assert tf.io.gfile.GFile(uri(f"{hdfs_tmp}/tf.bin"), "rb").read() == data  # read across its three blocks
    assert fs.read_bytes(uri(f"{hdfs_tmp}/py.bin")) == data


# ---- bad input -----------------------------------------------------------------------------------------------


def test_missing_path_file_under_file_and_directory_errors(hdfs_tmp):
    base = uri(hdfs_tmp)
    with pytest.raises(tf.errors.NotFoundError, match=f"{base}/nope: no such file or directory"):
        tf.io.gfile.GFile(f"{base}/nope").read()
    with pytest.raises(tf.errors.NotFoundError, match="nope"):
        tf.io.gfile.stat(f"{base}/nope")
    with pytest.raises(tf.errors.NotFoundError):
        list(tf.data.TFRecordDataset(f"{base}/nope.tfrecord"))
    with tf.io.gfile.GFile(f"{base}/file", "w") as f:
        f.write("x")
    with pytest.raises(tf.errors.FailedPreconditionError, match=f"{base}/file/under.*a parent of this path is a file"):
        with tf.io.gfile.GFile(f"{base}/file/under", "w") as f:
            f.write("y")
    with pytest.raises(tf.errors.FailedPreconditionError, match="is a directory"):
        with tf.io.gfile.GFile(base, "w") as f:  # opened at the first write
            f.write("z")
    with pytest.raises(tf.errors.NotFoundError, match="Could not find directory"):  # TF's own words for it
        tf.io.gfile.listdir(f"{base}/file")
    assert tf.io.gfile.listdir(base) == ["file"]  # nothing half-written left behind
    # as TF's local filesystem has them (each was another error, or another outcome, on hdfs://)
    with pytest.raises(tf.errors.FailedPreconditionError, match=f"{base}/file: a file, not a directory"):
        tf.io.gfile.makedirs(f"{base}/file")  # was AlreadyExists
    tf.io.gfile.makedirs(f"{base}/d/sub")
    with pytest.raises(tf.errors.FailedPreconditionError, match=f"{base}/d: is a directory"):
        tf.io.gfile.GFile(f"{base}/d").read()  # was NotFound
    with pytest.raises(tf.errors.FailedPreconditionError, match="must both be directories"):
        tf.io.gfile.rename(f"{base}/file", f"{base}/d", overwrite=True)  # was Internal, with a Java stack trace
    with pytest.raises(tf.errors.FailedPreconditionError, match="rename destination directory is not empty"):
        tf.io.gfile.rename(f"{base}/d/sub", f"{base}/d", overwrite=True)
    tf.io.gfile.rename(f"{base}/file", f"{base}/file", overwrite=True)  # onto itself: nothing changes
    short = "hdfs:///" + base.split("://", 1)[1].split("/", 1)[1]  # hdfs:///tmp/…, on fs.defaultFS
    tf.io.gfile.rename(f"{short}/file", f"{base}/file2")  # two spellings of one cluster (was "across filesystems")
    tf.io.gfile.rmtree(f"{base}/file2")  # rmtree of a file deletes it (TF's DeleteRecursively)
    long = f"{base}/{'n' * 250}"  # HDFS takes it; the hidden temporary beside it must fit 255 bytes too
    with tf.io.gfile.GFile(long, "w") as f:
        f.write("z")
    assert tf.io.gfile.GFile(long).read() == "z"
    assert sorted(tf.io.gfile.listdir(base)) == ["d", "n" * 250]


def test_a_gfile_dropped_unclosed_keeps_what_was_written_as_a_local_file_does(hdfs_tmp):
    """GFile's destructor closes nothing (TF calls the filesystem's cleanup): the hidden temporary was deleted
    and the data lost, where a local file keeps it."""
    import gc

    target = f"{uri(hdfs_tmp)}/f"
    with tf.io.gfile.GFile(target, "w") as f:
        f.write("old version")

    def write_without_close() -> None:
        f = tf.io.gfile.GFile(target, "w")
        f.write("new version")

    write_without_close()
    gc.collect()
    assert tf.io.gfile.GFile(target).read() == "new version"
    assert tf.io.gfile.listdir(uri(hdfs_tmp)) == ["f"]  # no temporary left


def test_a_bad_client_block_size_is_named_and_writes_nothing(hdfs, hdfs_tmp, hadoop_conf, tmp_path, monkeypatch):
    from hdfs_io import fs
    from hdfs_io.filesystems.hdfs import HadoopConfigError

    monkeypatch.setenv("HADOOP_CONF_DIR", str(_conf_with(hadoop_conf, tmp_path / "bad", dfs_blocksize="12x")))
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"dfs.blocksize = '12x' in the Hadoop configuration"):
        with tf.io.gfile.GFile(uri(f"{hdfs_tmp}/tf.bin"), "wb") as f:
            f.write(b"x")
    with pytest.raises(HadoopConfigError, match=r"dfs.blocksize = '12x' in the Hadoop configuration is not a size"):
        fs.write_bytes(uri(f"{hdfs_tmp}/py.bin"), b"x")
    monkeypatch.setenv("HADOOP_CONF_DIR", str(hadoop_conf))
    assert not list(hdfs.list_status(hdfs_tmp))  # nothing created, not even a temporary file


def test_permission_denied_names_path_and_user(hdfs, hdfs_tmp, monkeypatch):
    hdfs.mkdirs(f"{hdfs_tmp}/private", permission=0o700)
    with tf.io.gfile.GFile(uri(f"{hdfs_tmp}/private/secret"), "w") as f:
        f.write("s")
    monkeypatch.setenv("HADOOP_USER_NAME", "tfoy-stranger")
    with pytest.raises(tf.errors.PermissionDeniedError,
                       match=f"{hdfs_tmp}/private/secret: permission denied for HDFS user 'tfoy-stranger'"):
        tf.io.gfile.GFile(uri(f"{hdfs_tmp}/private/secret")).read()
    with pytest.raises(tf.errors.PermissionDeniedError, match="tfoy-stranger"):
        with tf.io.gfile.GFile(uri(f"{hdfs_tmp}/private/other"), "w") as f:
            f.write("x")


def test_unreachable_namenode_fails_in_bounded_time_naming_it(monkeypatch, hadoop_conf, tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed_port = s.getsockname()[1]
    t0 = time.monotonic()
    with pytest.raises(tf.errors.UnavailableError, match=f"127.0.0.1:{closed_port}"):
        tf.io.gfile.exists(f"hdfs://127.0.0.1:{closed_port}/x")
    assert time.monotonic() - t0 < 10

    # something that accepts connections but never answers: bounded by TFOY_HDFS_RPC_TIMEOUT
    silent = socket.create_server(("127.0.0.1", 0))
    port = silent.getsockname()[1]
    held = []
    stop = threading.Event()

    def accept():
        silent.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(silent.accept()[0])
            except OSError:
                pass

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    monkeypatch.setenv("TFOY_HDFS_RPC_TIMEOUT", "3")
    t0 = time.monotonic()
    try:
        with pytest.raises(tf.errors.DeadlineExceededError, match=f"127.0.0.1:{port}.*did not answer within 3s"):
            tf.io.gfile.stat(f"hdfs://127.0.0.1:{port}/x")
        assert time.monotonic() - t0 < 15
        # the same as the defaultFS of hdfs:///x: the message named no address
        conf = tmp_path / "conf"
        conf.mkdir()
        for site in Path(hadoop_conf).glob("*-site.xml"):
            text = site.read_text()
            (conf / site.name).write_text(re.sub(r"hdfs://[^<]+", f"hdfs://127.0.0.1:{port}", text)
                                          if site.name == "core-site.xml" else text)
        monkeypatch.setenv("HADOOP_CONF_DIR", str(conf))
        with pytest.raises(tf.errors.DeadlineExceededError,
                           match=rf"hdfs:///x: HDFS did not answer within 3s .*\(NameNode 127.0.0.1:{port}\)"):
            tf.io.gfile.stat("hdfs:///x")
    finally:
        stop.set()
        thread.join()
        silent.close()
        for c in held:
            c.close()


_WRITER = textwrap.dedent("""
    import sys, time
    import hdfs_io, tensorflow as tf
    with tf.io.gfile.GFile(sys.argv[1], "wb") as f:
        f.write(b"x" * (8 << 20))
        f.flush()
        print("written", flush=True)
        time.sleep(600)
""")


def test_writer_killed_mid_file_leaves_previous_file_and_blocks_no_writer(hdfs_tmp, tmp_path):
    target = uri(f"{hdfs_tmp}/weights.h5")
    with tf.io.gfile.GFile(target, "wb") as f:
        f.write(b"previous")
    script = tmp_path / "writer.py"
    script.write_text(_WRITER)
    proc = subprocess.Popen([sys.executable, str(script), target], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "written"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
    assert tf.io.gfile.GFile(target, "rb").read() == b"previous"
    t0 = time.monotonic()
    with tf.io.gfile.GFile(target, "wb") as f:  # no lease on the target: the next writer goes at once
        f.write(b"next")
    assert time.monotonic() - t0 < 10
    assert tf.io.gfile.GFile(target, "rb").read() == b"next"


# ---- kill -9 in training, resumed by Keras's own BackupAndRestore ----------------------------------------------

_TRAIN = textwrap.dedent("""
    import json, os, signal, sys
    import hdfs_io, numpy as np, keras
    backup, log, kill_at = sys.argv[1], sys.argv[2], int(sys.argv[3])
    keras.utils.set_random_seed(1)
    x = np.random.default_rng(0).normal(size=(64, 4)).astype("float32"); y = (x.sum(1) > 0).astype("int32")
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(8, activation="relu"), keras.layers.Dense(2)])
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))

    class Record(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            with open(log, "a") as f:
                f.write(json.dumps(epoch) + "\\n")
            if epoch == kill_at:
                os.kill(os.getpid(), signal.SIGKILL)

    model.fit(x, y, epochs=5, batch_size=16, verbose=0,
              callbacks=[keras.callbacks.BackupAndRestore(backup_dir=backup), Record()])
""")


def test_backup_and_restore_on_hdfs_resumes_after_kill_9(hdfs_tmp, tmp_path):
    script = tmp_path / "train.py"
    script.write_text(_TRAIN)
    log = tmp_path / "epochs.log"
    backup = uri(f"{hdfs_tmp}/backup")
    first = subprocess.run([sys.executable, str(script), backup, str(log), "3"], timeout=300)
    assert first.returncode == -signal.SIGKILL
    assert tf.io.gfile.exists(f"{backup}/latest.weights.h5")
    second = subprocess.run([sys.executable, str(script), backup, str(log), "-1"], timeout=300)
    assert second.returncode == 0
    epochs = [json.loads(line) for line in log.read_text().split()]
    assert epochs == [0, 1, 2, 3, 3, 4]  # killed as epoch 3 began; resumed at epoch 3 from the HDFS backup
    assert not tf.io.gfile.exists(f"{backup}/latest.weights.h5")  # Keras deletes it after a complete fit


# ---- TensorBoard reading hdfs:// while training writes -----------------------------------------------------------


def _get_json(url: str):
    with urllib.request.urlopen(url, timeout=5) as r:
        return json.loads(r.read())


@pytest.mark.parametrize("command", ["tensorboard-role", "plain-tensorboard-cli"])
def test_tensorboard_server_follows_hdfs_logdir_while_written(hdfs_tmp, tmp_path, command):
    """The tensorboard role's command, and the `tensorboard` a user types on an edge node (hdfs_io is imported by
    its tensorboard_plugins entry point, nothing by hand)."""
    from tfnode.tensorboard import tensorboard_command

    logdir = uri(f"{hdfs_tmp}/logs")
    writer = tf.summary.create_file_writer(f"{logdir}/run1")
    with writer.as_default():
        tf.summary.scalar("loss", 1.0, step=0)
    writer.flush()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    if command == "tensorboard-role":
        cmd = tensorboard_command(logdir, port)
        cmd[cmd.index("--bind_all")] = "--host=127.0.0.1"
    else:
        cmd = [str(Path(sys.executable).parent / "tensorboard"), "--logdir", logdir, "--port", str(port),
               "--host=127.0.0.1"]
    cmd += ["--reload_interval", "1"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=open(tmp_path / "tb.log", "wb"))
    try:
        def steps() -> list[int]:
            try:
                data = _get_json(f"http://127.0.0.1:{port}/data/plugin/scalars/scalars?run=run1&tag=loss")
            except (OSError, ValueError):
                return []
            return [int(p[1]) for p in data]

        deadline = time.monotonic() + 90
        while steps() != [0] and time.monotonic() < deadline:
            assert proc.poll() is None, (tmp_path / "tb.log").read_text()[-3000:]
            time.sleep(1)
        assert steps() == [0], (tmp_path / "tb.log").read_text()[-3000:]
        with writer.as_default():  # training goes on: TensorBoard sees the new steps
            for step in (1, 2):
                tf.summary.scalar("loss", 1.0 / (step + 1), step=step)
        writer.flush()
        deadline = time.monotonic() + 60
        while steps() != [0, 1, 2] and time.monotonic() < deadline:
            time.sleep(1)
        assert steps() == [0, 1, 2]
    finally:
        writer.close()
        proc.terminate()
        proc.wait(30)
