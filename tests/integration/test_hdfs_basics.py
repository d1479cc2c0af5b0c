"""HDFS round trips on the real cluster, through hdfs-native (no JVM) and through the `hdfs dfs` command."""

from __future__ import annotations

import pytest

from tests.conftest import run_cli

pytestmark = pytest.mark.integration


def test_put_get_list_rename_with_hdfs_native(hdfs, hdfs_tmp):
    payload = bytes(range(256)) * 4096  # 1 MiB, not a multiple of any buffer size
    with hdfs.create(f"{hdfs_tmp}/a.bin") as writer:
        writer.write(payload)
    assert hdfs.get_file_info(f"{hdfs_tmp}/a.bin").length == len(payload)

    hdfs.rename(f"{hdfs_tmp}/a.bin", f"{hdfs_tmp}/b.bin")
    names = sorted(s.path.rsplit("/", 1)[-1] for s in hdfs.list_status(hdfs_tmp))
    assert names == ["b.bin"]
    with hdfs.read(f"{hdfs_tmp}/b.bin") as reader:
        assert reader.read() == payload

    # rename onto an existing file only with overwrite (HDFS rename2), and then atomically
    with hdfs.create(f"{hdfs_tmp}/c.bin") as writer:
        writer.write(b"old")
    with pytest.raises(FileExistsError):
        hdfs.rename(f"{hdfs_tmp}/b.bin", f"{hdfs_tmp}/c.bin")
    hdfs.rename(f"{hdfs_tmp}/b.bin", f"{hdfs_tmp}/c.bin", overwrite=True)
    with hdfs.read(f"{hdfs_tmp}/c.bin") as reader:
        assert reader.read() == payload


def test_put_get_list_rename_with_hdfs_dfs(hdfs, hdfs_tmp, tmp_path):
    local = tmp_path / "in.txt"
    local.write_text("line one\nline two\n")
    run_cli("hdfs", "dfs", "-put", str(local), f"{hdfs_tmp}/in.txt")
    run_cli("hdfs", "dfs", "-mv", f"{hdfs_tmp}/in.txt", f"{hdfs_tmp}/moved.txt")
    listing = run_cli("hdfs", "dfs", "-ls", hdfs_tmp).stdout
    assert f"{hdfs_tmp}/moved.txt" in listing and "in.txt" not in listing
    assert run_cli("hdfs", "dfs", "-cat", f"{hdfs_tmp}/moved.txt").stdout == "line one\nline two\n"
    run_cli("hdfs", "dfs", "-get", f"{hdfs_tmp}/moved.txt", str(tmp_path / "out.txt"))
    assert (tmp_path / "out.txt").read_text() == "line one\nline two\n"
    # and the two clients see the same namespace
    with hdfs.read(f"{hdfs_tmp}/moved.txt") as reader:
        assert reader.read() == b"line one\nline two\n"


def test_hdfs_dfs_reports_missing_path(hadoop_conf):
    proc = run_cli("hdfs", "dfs", "-ls", "/no/such/tfoy/path", check=False)
    assert proc.returncode != 0
    assert "No such file or directory" in proc.stderr
