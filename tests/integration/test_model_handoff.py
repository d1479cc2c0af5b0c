"""Serving hand-off against the real HDFS: list, pull (atomic, never a partial version) and prune."""

from __future__ import annotations

import pytest

from hdfs_io import fs
from hdfs_io.export import SUCCESS
from hdfs_io.serving import local_versions, prune_local, pull_latest

pytestmark = pytest.mark.integration


def fake_version(base: str, version: int, complete: bool = True) -> None:
    """A SavedModel-shaped folder (contents do not matter to the hand-off)."""
    fs.write_bytes(f"{base}/{version}/saved_model.pb", f"model {version}".encode())
    fs.write_bytes(f"{base}/{version}/variables/variables.index", b"idx")
    if complete:
        fs.write_bytes(f"{base}/{version}/{SUCCESS}", b"")


def test_pull_takes_newest_complete_version_while_a_newer_one_is_written(hdfs_tmp, tmp_path):
    base = f"{hdfs_tmp}/export"
    fake_version(base, 1)
    fake_version(base, 2, complete=False)  # renamed into place, _SUCCESS not yet written
    fs.write_bytes(f"{base}/.tmp-3-abc/saved_model.pb", b"half")  # still uploading
    serving = tmp_path / "serving"
    result = pull_latest(base, serving)
    assert (result.version, result.pulled) == (1, True)
    assert (serving / "1" / "saved_model.pb").read_bytes() == b"model 1"
    assert sorted(p.name for p in serving.iterdir()) == ["1"]  # no staging folder left

    fs.write_bytes(f"{base}/2/{SUCCESS}", b"")  # version 2 completes
    assert pull_latest(base, serving).version == 2
    assert pull_latest(base, serving).pulled is False  # already there: nothing copied
    assert local_versions(serving) == [1, 2]


def test_keep_and_prune(hdfs_tmp, tmp_path):
    base = f"{hdfs_tmp}/export"
    serving = tmp_path / "serving"
    for v in (1, 2, 3):
        fake_version(base, v)
        pull_latest(base, serving, keep=2)
    assert local_versions(serving) == [2, 3]
    assert prune_local(serving, 1) == [2]
    with pytest.raises(ValueError, match="keep must be >= 1"):
        prune_local(serving, 0)


def test_tfoy_model_cli(hdfs_tmp, tmp_path):
    from tests.conftest import run_cli

    base = f"{hdfs_tmp}/export"
    for v in (1, 2, 3):
        fake_version(base, v)
    fake_version(base, 4, complete=False)
    listing = run_cli("tfoy", "model", "list", base).stdout.split()
    assert [line.rsplit("/", 1)[1] for line in listing] == ["1", "2", "3"]
    out = run_cli("tfoy", "model", "pull", base, str(tmp_path / "serving"), "--keep", "1").stdout
    assert "pulled version 3" in out and local_versions(tmp_path / "serving") == [3]
    assert "removed versions [1]" in run_cli("tfoy", "model", "prune", base, "--keep", "2").stdout
    missing = run_cli("tfoy", "model", "pull", f"{hdfs_tmp}/nothing", str(tmp_path / "s2"), check=False)
    assert missing.returncode == 1 and "no complete SavedModel version" in missing.stderr


def test_empty_export_base_is_named(hdfs_tmp, tmp_path):
    with pytest.raises(FileNotFoundError, match=f"{hdfs_tmp}/none: no complete SavedModel version"):
        pull_latest(f"{hdfs_tmp}/none", tmp_path / "s")
    assert not (tmp_path / "s").exists() or not list((tmp_path / "s").iterdir())
