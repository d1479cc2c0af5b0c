"""How a reader's files reach TF (datasets.route): TensorFlow's own filesystem, streamed through tf_bridge's plugin,
or staged, by scheme, compression, on_error mode, checking and whether the plugin loads (a fake here)."""

from __future__ import annotations

import re

import pytest
import tensorflow as tf

from hdfs_io import datasets, tf_bridge
from hdfs_io.datasets import Via, route

HDFS = ["hdfs://nn:8020/data/part-0", "hdfs://nn:8020/data/part-1"]
LOCAL = ["file:///data/part-0", "file:///data/part-1"]


class FakeBridge:
    def __init__(self) -> None:
        self.named: list[tuple[str, bool, object]] = []
        self.loads = 0  # how often route asked tf_bridge.get for the plugin

    def name(self, uri: str, records: bool, stats: object = None) -> str:
        self.named.append((uri, records, stats))
        return f"tfoy{'rec' if records else 'raw'}://{len(self.named)}"


@pytest.fixture
def plugin(monkeypatch):
    """The plugin loads (a fake)."""
    bridge = FakeBridge()

    def get() -> FakeBridge:
        bridge.loads += 1
        return bridge

    monkeypatch.setattr(tf_bridge, "get", get)
    return bridge


def _route(files: list[str], on_error: str = "raise", compression: str | None = None, verify: bool = True,
           tf_decompresses: bool = True) -> datasets.Route:
    return route(files, on_error=on_error, compression=compression, verify=verify, tf_decompresses=tf_decompresses)


@pytest.mark.parametrize("files", [HDFS, LOCAL, LOCAL[:1] + HDFS[:1]])
@pytest.mark.parametrize("verify", [True, False])
@pytest.mark.parametrize("compression", [None, "GZIP"])
def test_skip_mode_always_stages_without_loading_the_plugin(plugin, files, verify, compression):
    way = _route(files, on_error="skip", compression=compression, verify=verify)
    assert way.via is Via.STAGED and "skip" in way.reason
    assert plugin.loads == 0


@pytest.mark.parametrize("verify", [True, False])
def test_hdfs_files_stream_when_the_plugin_loads(plugin, verify):
    way = _route(HDFS, verify=verify)
    assert way.via is Via.STREAMED and way.bridge is plugin and plugin.loads == 1
    stats = datasets.ReadStats()
    assert way.tf_names(HDFS, records=verify, stats=stats) == ["tfoy" + ("rec" if verify else "raw") + "://1",
                                                              "tfoy" + ("rec" if verify else "raw") + "://2"]
    assert plugin.named == [(uri, verify, stats) for uri in HDFS]


def test_viewfs_streams_like_hdfs(plugin):
    assert _route(["viewfs://cluster/data/part-0"]).via is Via.STREAMED


def test_hdfs_files_are_staged_when_the_plugin_cannot_load(monkeypatch):
    monkeypatch.setattr(tf_bridge, "get", lambda: None)
    way = _route(HDFS)
    assert way.via is Via.STAGED and "plugin" in way.reason


@pytest.mark.parametrize("tf_decompresses", [True, False])
def test_compressed_hdfs_files_are_staged_without_loading_the_plugin(plugin, tf_decompresses):
    way = _route(HDFS, compression="GZIP", verify=False, tf_decompresses=tf_decompresses)
    assert way.via is Via.STAGED and "GZIP" in way.reason and plugin.loads == 0


def test_files_not_all_on_hdfs_are_staged_without_loading_the_plugin(plugin):
    way = _route(LOCAL[:1] + HDFS[:1])
    assert way.via is Via.STAGED and "HDFS" in way.reason and plugin.loads == 0


def test_checked_local_files_are_staged(plugin):
    """TF's own errors would not name the file: a staged copy is counted instead."""
    way = _route(LOCAL, verify=True)
    assert way.via is Via.STAGED and "checked" in way.reason and plugin.loads == 0


def test_unchecked_local_files_are_read_by_tensorflow_itself(plugin):
    way = _route(LOCAL, verify=False)
    assert way.via is Via.TF_NATIVE and plugin.loads == 0
    assert way.tf_names(LOCAL, records=False, stats=None) == ["/data/part-0", "/data/part-1"]


def test_compressed_local_files_are_native_only_when_the_reader_decompresses(plugin):
    assert _route(LOCAL, compression="GZIP", verify=False, tf_decompresses=True).via is Via.TF_NATIVE  # TFRecord
    way = _route(LOCAL, compression="GZIP", verify=False, tf_decompresses=False)  # CSV
    assert way.via is Via.STAGED and "GZIP" in way.reason


def test_staged_route_has_no_tf_names():
    with pytest.raises(ValueError):
        datasets.Route(Via.STAGED, "test").tf_names(LOCAL, records=False, stats=None)


def test_tf_native_is_file_and_tf_schemes_but_never_hadoop(monkeypatch):
    monkeypatch.setattr(tf.io.gfile, "get_registered_schemes", lambda: ["file", "", "gs", "hdfs", "viewfs"])
    assert datasets.tf_native("file:///x") and datasets.tf_native("/x") and datasets.tf_native("gs://b/x")
    assert not datasets.tf_native("hdfs://nn/x") and not datasets.tf_native("viewfs://c/x")  # the plugin's: streamed
    assert not datasets.tf_native("s3a://b/x")
    assert _route(["gs://b/x"], verify=False).via is Via.TF_NATIVE


def test_both_readers_take_the_one_route(tmp_path, monkeypatch):
    """tfrecord_dataset and csv_dataset ask route, each saying whether its TF dataset decompresses."""
    asked: list[tuple[str, bool, Via]] = []

    def spy(files, **kw):
        way = route(files, **kw)
        asked.append((kw["on_error"], kw["tf_decompresses"], way.via))
        return way

    monkeypatch.setattr(datasets, "route", spy)
    with tf.io.TFRecordWriter(str(tmp_path / "a.tfrecord")) as w:
        for i in range(3):
            w.write(b"%d" % i)
    (tmp_path / "a.csv").write_text("x,y\n1,2\n3,4\n")
    records = f"file://{tmp_path}/a.tfrecord"
    assert list(datasets.tfrecord_dataset(records, verify=False).as_numpy_iterator()) == [b"0", b"1", b"2"]
    assert len(list(datasets.tfrecord_dataset(records, on_corrupt="skip"))) == 3
    rows = datasets.csv_dataset(f"file://{tmp_path}/a.csv", [0, 0], verify=False)
    assert [tuple(int(v) for v in row) for row in rows] == [(1, 2), (3, 4)]
    assert asked == [("raise", True, Via.TF_NATIVE), ("skip", True, Via.STAGED), ("raise", False, Via.TF_NATIVE)]


@pytest.mark.parametrize("reader", ["tfrecord_dataset", "csv_dataset"])
def test_a_misspelt_option_is_named_before_any_file_is_listed(reader, monkeypatch):
    """The readers share one option list (ReadOptions); a keyword outside it fails as Python's own would, naming it."""
    monkeypatch.setattr(datasets, "worker_files", lambda *a: pytest.fail("files listed first"))
    args = ("hdfs://nn:8020/data/*",) + (([0.0],) if reader == "csv_dataset" else ())
    with pytest.raises(TypeError, match=rf"{reader}\(\) got an unexpected keyword argument 'shufle_files'"):
        getattr(datasets, reader)(*args, shufle_files=True)


@pytest.mark.parametrize("reader, options, on_error, message", [
    ("tfrecord_dataset", {"compression": "gzip"}, "raise", "tfrecord_dataset(compression='gzip'): None or 'GZIP'"),
    ("csv_dataset", {"compression": "ZLIB"}, "raise", "csv_dataset(compression='ZLIB'): None or 'GZIP'"),
    ("tfrecord_dataset", {}, "Skip", "tfrecord_dataset(on_corrupt='Skip'): one of 'raise', 'skip'"),
    ("csv_dataset", {}, "drop", "csv_dataset(on_bad_line='drop'): one of 'raise', 'skip'"),
])
def test_unknown_compression_or_error_mode_is_named_before_reading(reader, options, on_error, message):
    """A value the readers do not know would take another path quietly (gzip bytes read as corrupt records)."""
    from hdfs_io.datasets import _Reading

    with pytest.raises(ValueError, match=re.escape(message)):
        _Reading(reader, options, on_error)


@pytest.mark.parametrize("cols, message", [
    ([2, 0], "select_cols: ascending and without repeats, got [2, 0]"),
    ([0, 0], "select_cols: ascending and without repeats, got [0, 0]"),
    ([0], "select_cols: 1 columns for 2 record_defaults (one default each)"),
    ([0, -1], "select_cols: whole column numbers >= 0, got [0, -1]"),
])
def test_select_cols_are_checked_before_any_file_is_listed(cols, message, monkeypatch):
    """TF's own check said only some of this, at graph build, after the files were listed."""
    monkeypatch.setattr(datasets, "worker_files", lambda *a: pytest.fail("files listed first"))
    with pytest.raises(ValueError, match=re.escape(message)):
        datasets.csv_dataset("hdfs://nn:8020/data/*", [tf.int32, tf.int32], select_cols=cols)


def test_numpy_select_cols_are_taken_as_python_ints():
    import numpy as np

    cols = datasets._check_select_cols(list(np.arange(2)), 2)
    assert cols == [0, 1] and all(type(c) is int for c in cols)
