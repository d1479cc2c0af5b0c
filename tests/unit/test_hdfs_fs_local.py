"""hdfs_io's local fallback, sharding and configuration parsing (no cluster needed)."""

from __future__ import annotations

import sys

import pytest

from hdfs_io import datasets, fs


def test_lazy_package_does_not_import_tensorflow():
    import subprocess

    code = "import sys, hdfs_io; hdfs_io.exists('file:///'); print('tensorflow' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.stdout.strip() == "False", out.stderr


def test_local_filesystem_round_trip(tmp_path):
    base = f"file://{tmp_path}"
    fs.makedirs(f"{base}/a")
    fs.write_bytes(f"{base}/a/b.bin", b"123")
    assert fs.stat(f"{base}/a/b.bin").size == 3
    assert [i.name for i in fs.ls(f"{base}/a")] == ["b.bin"]
    with pytest.raises(FileExistsError):
        fs.makedirs(f"{base}/a", exist_ok=False)
    with pytest.raises(ValueError, match="across filesystems"):
        fs.rename(f"{base}/a/b.bin", "hdfs://nn:8020/x")
    fs.get(f"{base}/a", str(tmp_path / "copy"))
    assert (tmp_path / "copy" / "b.bin").read_bytes() == b"123"


def test_expand_paths_and_shards(tmp_path):
    for name in ("p1", "p2", "p3", "_SUCCESS", ".hidden"):
        (tmp_path / name).write_text(name)
    files = datasets.expand_paths(f"file://{tmp_path}")
    assert [f.rsplit("/", 1)[1] for f in files] == ["p1", "p2", "p3"]
    assert datasets.expand_paths([f"file://{tmp_path}/p*", f"file://{tmp_path}/p1"]) == files  # de-duplicated
    with pytest.raises(FileNotFoundError, match="q\\*"):
        datasets.expand_paths(f"file://{tmp_path}/q*")
    shards = [datasets.shard_files(files, 2, i) for i in range(2)]
    assert sorted(shards[0] + shards[1]) == files and not set(shards[0]) & set(shards[1])
    with pytest.raises(ValueError, match="shard_index"):
        datasets.shard_files(files, 2, 2)


def test_ha_nameservice_addresses(tmp_path, monkeypatch):
    (tmp_path / "hdfs-site.xml").write_text(
        "<configuration>"
        "<property><name>dfs.ha.namenodes.prod</name><value>nn1,nn2</value></property>"
        "<property><name>dfs.namenode.rpc-address.prod.nn1</name><value>h1:8020</value></property>"
        "<property><name>dfs.namenode.rpc-address.prod.nn2</name><value>h2:9000</value></property>"
        "</configuration>"
    )
    monkeypatch.setenv("HADOOP_CONF_DIR", str(tmp_path))
    assert fs.namenode_addresses("hdfs", "prod") == [("h1", 8020), ("h2", 9000)]
    assert fs.namenode_addresses("hdfs", "nn.example:8021") == [("nn.example", 8021)]
    assert fs.namenode_addresses("hdfs", "plainhost") == [("plainhost", 8020)]


def test_hdfs_errors_are_translated():
    err = RuntimeError('RPCError("org.apache.hadoop.security.AccessControlException", "Permission denied: '
                       'user=bob, access=WRITE, inode=\\"/x\\":root:supergroup:drwxr-xr-x\\n\\tat org...")')
    out = fs.translate_error(err, "hdfs://nn/x/y")
    assert isinstance(out, PermissionError) and "hdfs://nn/x/y" in str(out) and "user=bob" in str(out)
    assert isinstance(fs.translate_error(FileNotFoundError("/x"), "hdfs://nn/x"), FileNotFoundError)
    other = RuntimeError("something else")
    assert fs.translate_error(other, "u") is other
