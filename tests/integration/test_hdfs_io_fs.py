"""hdfs_io's filesystem facade and fsspec/pyarrow adapters on the real cluster, and its errors."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from hdfs_io import adapters, fs
from hdfs_io.paths import default_fs

pytestmark = pytest.mark.integration


def test_write_read_stat_ls_glob_rename(hdfs, hdfs_tmp):
    base = hdfs_tmp
    payload = os.urandom(3 * (1 << 20) + 17)  # several IO chunks' worth is not needed: not a multiple of any
    with fs.open(f"{base}/a/data.bin", "wb") as f:
        f.write(payload[:1000])
        f.write(payload[1000:])
    assert hdfs.get_file_info(f"{base}/a/data.bin").length == len(payload)  # seen by a plain client too
    with fs.open(f"{base}/a/data.bin") as f:
        assert f.read(10) == payload[:10]
        assert f.read() == payload[10:]
    info = fs.stat(f"{base}/a/data.bin")
    assert info.uri == f"{default_fs()}{base}/a/data.bin" and info.size == len(payload) and not info.is_dir
    assert fs.exists(f"hdfs://{default_fs().split('://')[1]}{base}/a")  # fully qualified form
    assert fs.isdir(f"{base}/a")

    fs.write_bytes(f"{base}/a/x.txt", b"x")
    with fs.open(f"{base}/a/y.txt", "w") as f:
        f.write("héllo\n")
    assert [i.name for i in fs.ls(f"{base}/a")] == ["data.bin", "x.txt", "y.txt"]
    assert [u.rsplit("/", 1)[1] for u in fs.glob(f"{base}/a/*.txt")] == ["x.txt", "y.txt"]
    assert fs.read_bytes(f"{base}/a/y.txt").decode() == "héllo\n"
    with fs.open(f"{base}/a/y.txt", "r") as f:
        assert list(f) == ["héllo\n"]

    # atomic rename with overwrite replaces the target; without it the target is protected
    with pytest.raises(FileExistsError, match="x.txt"):
        fs.rename(f"{base}/a/y.txt", f"{base}/a/x.txt")
    fs.rename(f"{base}/a/y.txt", f"{base}/a/x.txt", overwrite=True)
    assert fs.read_bytes(f"{base}/a/x.txt") == "héllo\n".encode()
    assert not fs.exists(f"{base}/a/y.txt")

    assert fs.delete(f"{base}/a", recursive=True)
    assert not fs.exists(f"{base}/a")
    assert fs.delete(f"{base}/a", recursive=True) is False


def test_writes_of_any_buffer_arrive_whole(hdfs, hdfs_tmp):
    """io.BufferedWriter hands writes larger than its buffer to the HDFS writer as memoryviews (converted to bytes
    for hdfs-native, which is slow on them); small ones are buffered. All of them must arrive in order."""
    big = os.urandom(3 * (1 << 20) + 5)  # larger than fs.open's buffer
    parts = [b"head", memoryview(big)[1:], bytearray(b"middle"), memoryview(big), b"", big[:7]]
    with fs.open(f"{hdfs_tmp}/buffers.bin", "wb") as f:
        for part in parts:
            assert f.write(part) == len(part)
    expected = b"".join(bytes(p) for p in parts)
    assert hdfs.get_file_info(f"{hdfs_tmp}/buffers.bin").length == len(expected)
    assert fs.read_bytes(f"{hdfs_tmp}/buffers.bin") == expected


def test_put_and_get_whole_trees(hdfs_tmp, tmp_path):
    src = tmp_path / "src"
    (src / "sub" / "deeper").mkdir(parents=True)
    (src / "top.txt").write_text("top")
    (src / "sub" / "mid.bin").write_bytes(os.urandom(5000))
    (src / "sub" / "deeper" / "low.txt").write_text("low")
    (src / "empty").mkdir()
    fs.put(str(src), f"{hdfs_tmp}/tree")
    names = sorted(i.uri.split("/tree/", 1)[1] for i in fs.ls(f"{hdfs_tmp}/tree", recursive=True))
    assert names == ["empty", "sub", "sub/deeper", "sub/deeper/low.txt", "sub/mid.bin", "top.txt"]
    fs.get(f"{hdfs_tmp}/tree", str(tmp_path / "back"))
    for rel in ("top.txt", "sub/mid.bin", "sub/deeper/low.txt"):
        assert (tmp_path / "back" / rel).read_bytes() == (src / rel).read_bytes()
    assert (tmp_path / "back" / "empty").is_dir()


def test_put_replaces_a_tree_whole_only_when_told_and_a_failed_put_leaves_nothing(hdfs_tmp, tmp_path):
    old, new = tmp_path / "old", tmp_path / "new"
    (old / "sub").mkdir(parents=True)
    (old / "part-00000").write_text("old")
    (old / "sub" / "stale.txt").write_text("stale")
    new.mkdir()
    (new / "part-00000").write_text("new")
    target = f"{hdfs_tmp}/data"
    fs.put(str(old), target)
    with pytest.raises(FileExistsError, match=f"{target}: already exists; pass overwrite=True to replace the folder"):
        fs.put(str(new), target)  # by default a folder is not replaced: that would delete all it holds
    with pytest.raises(FileExistsError, match=f"{target}: already exists$"):
        fs.put(str(new), target, overwrite=False)
    assert fs.read_bytes(f"{target}/sub/stale.txt") == b"stale"
    fs.put(str(new), target, overwrite=True)  # the new tree, not the new one merged into the old
    assert [i.uri.rsplit("/", 1)[1] for i in fs.ls(target, recursive=True)] == ["part-00000"]
    assert fs.read_bytes(f"{target}/part-00000") == b"new"
    with pytest.raises(IsADirectoryError, match=f"{target}: a folder; it is replaced only with a folder"):
        fs.put(str(new / "part-00000"), target)
    fs.write_bytes(f"{hdfs_tmp}/one", b"1")
    with pytest.raises(NotADirectoryError, match=f"{hdfs_tmp}/one: a file; it is replaced only with a file"):
        fs.put(str(new), f"{hdfs_tmp}/one")
    assert fs.read_bytes(f"{hdfs_tmp}/one") == b"1"
    (new / "zz-broken").symlink_to(tmp_path / "gone")  # fails the upload (before or after part-00000)
    with pytest.raises(FileNotFoundError):
        fs.put(str(new), f"{hdfs_tmp}/fresh")
    with pytest.raises(FileNotFoundError):
        fs.put(str(new), target, overwrite=True)
    assert not fs.exists(f"{hdfs_tmp}/fresh")
    assert fs.read_bytes(f"{target}/part-00000") == b"new"
    assert sorted(i.uri.rsplit("/", 1)[1] for i in fs.ls(hdfs_tmp)) == ["data", "one"]  # no temporaries left


def test_relative_paths_go_to_the_user_home(hdfs, hadoop_conf):
    name = f"tfoy-rel-{time.time_ns()}"
    fs.write_bytes(name, b"home")
    try:
        assert hdfs.get_file_info(f"/user/{os.environ.get('HADOOP_USER_NAME') or 'root'}/{name}").length == 4
    finally:
        fs.delete(name)


def test_local_fallback_same_api(tmp_path):
    base = f"file://{tmp_path}"
    fs.makedirs(f"{base}/d")
    fs.write_bytes(f"{base}/d/a.txt", b"a")
    with fs.open(f"{base}/d/b.txt", "w") as f:
        f.write("b")
    assert fs.glob(f"{base}/d/*.txt") == [f"{base}/d/a.txt", f"{base}/d/b.txt"]
    fs.rename(f"{base}/d/b.txt", f"{base}/d/a.txt", overwrite=True)
    assert fs.read_bytes(f"{base}/d/a.txt") == b"b"
    fs.put(str(tmp_path / "d"), f"{base}/e")
    assert fs.stat(f"{base}/e/a.txt").size == 1
    with pytest.raises(FileNotFoundError, match="nope"):
        fs.stat(f"{base}/nope")


def test_fsspec_and_pyarrow_read_hdfs(hdfs_tmp):
    import pyarrow as pa
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    fs.write_bytes(f"{hdfs_tmp}/t.csv", b"a,b\n1,x\n2,y\n")
    ffs, path = adapters.fsspec_filesystem(f"{hdfs_tmp}/t.csv")
    with ffs.open(path, "rb") as f:
        assert f.read() == b"a,b\n1,x\n2,y\n"
    pfs, path = adapters.pyarrow_filesystem(f"{hdfs_tmp}/t.csv")
    with pfs.open_input_stream(path) as f:
        table = pacsv.read_csv(f)
    assert table.column("a").to_pylist() == [1, 2] and table.column("b").to_pylist() == ["x", "y"]
    pfs, ppath = adapters.pyarrow_filesystem(f"{hdfs_tmp}/t.parquet")
    pq.write_table(pa.table({"v": [1.5, 2.5]}), ppath, filesystem=pfs)
    assert fs.stat(f"{hdfs_tmp}/t.parquet").size > 0  # really on HDFS
    assert pq.read_table(ppath, filesystem=pfs).column("v").to_pylist() == [1.5, 2.5]


def test_missing_paths_name_the_path(hdfs_tmp):
    missing = f"{hdfs_tmp}/no/such.file"
    for call in (lambda: fs.stat(missing), lambda: fs.ls(missing), lambda: fs.open(missing).__enter__(),
                 lambda: fs.get(missing, "/tmp/x"), lambda: fs.delete(missing, missing_ok=False)):
        with pytest.raises(FileNotFoundError, match="/no/such.file"):
            call()
    assert fs.glob(f"{hdfs_tmp}/*.nothing") == []


def test_unreachable_namenode_fails_fast_naming_the_address():
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    start = time.monotonic()
    with pytest.raises(fs.NameNodeUnreachableError, match=f"127.0.0.1:{port}"):
        fs.exists(f"hdfs://127.0.0.1:{port}/x")
    with pytest.raises(ConnectionError, match=f"127.0.0.1:{port}"):
        adapters.pyarrow_filesystem(f"hdfs://127.0.0.1:{port}/x")
    assert time.monotonic() - start < 15


def test_silent_namenode_times_out_within_the_bound(monkeypatch):
    """A listener that accepts TCP but never answers (a hung NameNode): hdfs-native alone would wait for minutes."""
    import socket

    monkeypatch.setenv(fs.CONNECT_TIMEOUT_ENV, "1")
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(8)
        port = server.getsockname()[1]
        start = time.monotonic()
        with pytest.raises(fs.NameNodeUnreachableError, match=f"127.0.0.1:{port}"):
            fs.stat(f"hdfs://127.0.0.1:{port}/x")
        assert time.monotonic() - start < 5


PERMISSION_SCRIPT = """
import sys
from hdfs_io import fs
base = sys.argv[1]
for what, call in (("write", lambda: fs.write_bytes(base + "/denied.txt", b"x")),
                   ("mkdir", lambda: fs.makedirs(base + "/denied")),
                   ("rename", lambda: fs.rename(base + "/mine.txt", base + "/moved.txt"))):
    try:
        call()
        print(what, "NO ERROR")
    except PermissionError as exc:
        print(what, "PermissionError", exc)
"""


def test_permission_denied_names_path_and_user(hdfs, hdfs_tmp):
    # hdfs_tmp is created by root (the superuser) with mode 755: user nobody may read, not write
    fs.write_bytes(f"{hdfs_tmp}/mine.txt", b"x")
    env = {**os.environ, "HADOOP_USER_NAME": "nobody"}
    out = subprocess.run([sys.executable, "-c", PERMISSION_SCRIPT, hdfs_tmp], env=env, capture_output=True,
                         text=True, timeout=120).stdout.splitlines()
    assert len(out) == 3, out
    for line in out:
        assert "PermissionError" in line and hdfs_tmp in line and "'nobody'" in line, line
    assert not fs.exists(f"{hdfs_tmp}/denied.txt") and fs.exists(f"{hdfs_tmp}/mine.txt")


def test_files_and_folders_follow_the_configured_umask(hdfs, hdfs_tmp, hadoop_conf, tmp_path):
    """fs.permissions.umask-mode 077 (a locked-down cluster): hdfs_io and TF's hdfs:// create 0600 files and 0700
    folders, as `hdfs dfs` would, not hdfs-native's fixed 0644/0755."""
    import shutil

    conf = tmp_path / "conf"
    shutil.copytree(hadoop_conf, conf)
    core = conf / "core-site.xml"
    core.write_text(core.read_text().replace(
        "</configuration>", "<property><name>fs.permissions.umask-mode</name><value>077</value></property>"
                            "</configuration>"))
    base = f"{default_fs()}{hdfs_tmp}"
    code = f"""
import hdfs_io, tensorflow as tf
from hdfs_io import fs
fs.makedirs("{base}/py-dir")
fs.write_bytes("{base}/py-dir/a.bin", b"x")
tf.io.gfile.makedirs("{base}/tf-dir")
with tf.io.gfile.GFile("{base}/tf-dir/b.txt", "w") as f:
    f.write("y")
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=180,
                          env=dict(os.environ, HADOOP_CONF_DIR=str(conf)))
    assert proc.returncode == 0, proc.stderr[-3000:]
    modes = {p: oct(hdfs.get_file_info(f"{hdfs_tmp}/{p}").permission)
             for p in ("py-dir", "py-dir/a.bin", "tf-dir", "tf-dir/b.txt")}
    assert modes == {"py-dir": "0o700", "py-dir/a.bin": "0o600", "tf-dir": "0o700", "tf-dir/b.txt": "0o600"}, modes


def test_get_replaces_a_local_tree_whole_only_when_told_and_a_failed_get_leaves_nothing(hdfs_tmp, tmp_path):
    fs.write_bytes(f"{hdfs_tmp}/tree/part-00000", b"new")
    fs.write_bytes(f"{hdfs_tmp}/one", b"1")
    local = tmp_path / "with space" / "tree"
    local.mkdir(parents=True)
    (local / "stale.txt").write_text("stale")
    with pytest.raises(FileExistsError, match="tree: already exists; pass overwrite=True to replace the folder"):
        fs.get(f"{hdfs_tmp}/tree", str(local))
    assert (local / "stale.txt").read_text() == "stale"
    with pytest.raises(IsADirectoryError, match="tree: a folder; it is replaced only with a folder"):
        fs.get(f"{hdfs_tmp}/one", str(local), overwrite=True)
    fs.get(f"{hdfs_tmp}/tree", str(local), overwrite=True)
    assert sorted(p.name for p in local.iterdir()) == ["part-00000"]
    fs.get(f"{hdfs_tmp}/one", str(tmp_path / "one"))
    fs.get(f"{hdfs_tmp}/one", str(tmp_path / "one"))  # a file is replaced by default
    assert (tmp_path / "one").read_bytes() == b"1"


def test_a_get_that_fails_half_way_leaves_nothing(hdfs_tmp, tmp_path, monkeypatch):
    for name in ("a", "b"):
        fs.write_bytes(f"{hdfs_tmp}/tree/{name}", name.encode())
    real, calls = fs._get_file, []

    def second_fails(uri: str, local: str) -> None:
        calls.append(uri)
        if len(calls) == 2:
            raise OSError(f"{uri}: the DataNode went away")  # after a/ is on local disk
        real(uri, local)

    monkeypatch.setattr(fs, "_get_file", second_fails)
    with pytest.raises(OSError, match="tree/b: the DataNode went away"):
        fs.get(f"{hdfs_tmp}/tree", str(tmp_path / "tree"))
    assert list(tmp_path.iterdir()) == []  # no half tree, no temporary beside it


def test_makedirs_onto_a_file_names_it_as_a_file(hdfs_tmp):
    """HDFS says "already exists", which reads as a folder there: export_saved_model(base_path=<a file>) said so."""
    fs.write_bytes(f"{hdfs_tmp}/afile", b"x")
    with pytest.raises(NotADirectoryError, match=f"{hdfs_tmp}/afile: a file, not a folder"):
        fs.makedirs(f"{hdfs_tmp}/afile")
    with pytest.raises(NotADirectoryError, match="a parent is not a directory"):
        fs.makedirs(f"{hdfs_tmp}/afile/out")
    fs.makedirs(f"{hdfs_tmp}/d")
    assert fs.makedirs(f"{hdfs_tmp}/d").endswith("/d")  # an existing folder is fine
    with pytest.raises(FileExistsError, match="/d: already exists"):
        fs.makedirs(f"{hdfs_tmp}/d", exist_ok=False)


def test_get_takes_local_paths_with_url_characters(hdfs_tmp, tmp_path):
    """`#` and `?` cut a file:// URI short: the download went to /…/a."""
    fs.write_bytes(f"{hdfs_tmp}/tree/f", b"f")
    local = tmp_path / "a#b?c" / "tree"
    fs.get(f"{hdfs_tmp}/tree", str(local))
    assert (local / "f").read_bytes() == b"f" and sorted(p.name for p in tmp_path.iterdir()) == ["a#b?c"]
