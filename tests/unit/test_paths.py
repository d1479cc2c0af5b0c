from __future__ import annotations

import pytest

from hdfs_io.paths import absolute_uri, default_fs, split_uri

FS = "hdfs://nn.example:8020"


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("hdfs://other:9000/data/x", "hdfs://other:9000/data/x"),
        ("viewfs://cluster/data/x", "viewfs://cluster/data/x"),
        ("hdfs:///data/x", "hdfs://nn.example:8020/data/x"),
        ("/data/x", "hdfs://nn.example:8020/data/x"),
        ("mnist/tfr", "hdfs://nn.example:8020/user/alice/mnist/tfr"),
        ("file:///tmp/x", "file:///tmp/x"),
        ("gs://bucket/x", "gs://bucket/x"),
    ],
)
def test_absolute_uri_rules(path, expected):
    assert absolute_uri(path, FS, user="alice") == expected


def test_relative_path_on_local_default_fs_is_local(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert absolute_uri("x/y", "file://") == f"file://{tmp_path}/x/y"


def test_schemeless_authority_needs_matching_default_fs():
    with pytest.raises(ValueError, match="viewfs:///p: no authority"):
        absolute_uri("viewfs:///p", FS)
    with pytest.raises(ValueError, match="empty path"):
        absolute_uri("", FS)


def test_default_fs_from_hadoop_conf_dir(tmp_path, monkeypatch):
    (tmp_path / "core-site.xml").write_text(
        "<configuration><property><name>fs.defaultFS</name><value>hdfs://h:1/</value></property></configuration>"
    )
    monkeypatch.setenv("HADOOP_CONF_DIR", str(tmp_path))
    assert default_fs() == "hdfs://h:1"
    monkeypatch.setenv("HADOOP_CONF_DIR", str(tmp_path / "none"))
    assert default_fs() == "file://"


def test_split_uri():
    assert split_uri("hdfs://nn:1/a/b") == ("hdfs", "nn:1", "/a/b")
    assert split_uri("/a") == ("file", "", "/a")
