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
    with pytest.raises(ValueError, match=r"keep: a whole number >= 1 \(or None to keep every version\), got 0"):
        prune_local(serving, 0)


def test_tfoy_model_cli(hdfs_tmp, tmp_path):
    from hdfs_io.paths import absolute_uri
    from tests.conftest import run_cli

    base = f"{hdfs_tmp}/export"
    for v in (1, 2, 3):
        fake_version(base, v)
    fake_version(base, 4, complete=False)
    listing = run_cli("tfoy", "model", "list", base).stdout.split()
    assert [line.rsplit("/", 1)[1] for line in listing] == ["1", "2", "3"]
    out = run_cli("tfoy", "model", "pull", base, str(tmp_path / "serving"), "--keep", "1").stdout
    assert "pulled version 3" in out and local_versions(tmp_path / "serving") == [3]
    assert "removed versions [1]" in run_cli("tfoy", "model", "prune", absolute_uri(base), "--keep", "2").stdout
    missing = run_cli("tfoy", "model", "pull", f"{hdfs_tmp}/nothing", str(tmp_path / "s2"), check=False)
    assert missing.returncode == 2 and f"{hdfs_tmp}/nothing: no such export base" in missing.stderr  # as list
    fs.makedirs(f"{hdfs_tmp}/nothing")
    empty = run_cli("tfoy", "model", "pull", f"{hdfs_tmp}/nothing", str(tmp_path / "s2"), check=False)
    assert empty.returncode == 1 and "no complete SavedModel version" in empty.stderr


def test_empty_export_base_is_named(hdfs_tmp, tmp_path):
    with pytest.raises(FileNotFoundError, match=f"{hdfs_tmp}/none: no complete SavedModel version"):
        pull_latest(f"{hdfs_tmp}/none", tmp_path / "s")
    assert not (tmp_path / "s").exists() or not list((tmp_path / "s").iterdir())


def test_prune_of_a_bare_path_deletes_nothing_and_says_why(hdfs_tmp, tmp_path, request):
    """The defect: `tfoy model prune /srv/tf-serving/mnist` pruned the HDFS folder of that path (Hadoop's rule
    for bare paths) and left the local TF Serving folder alone. Both exist here, with three versions each."""
    import shutil
    from pathlib import Path

    from hdfs_io.paths import absolute_uri
    from tests.conftest import run_cli

    bare = f"{hdfs_tmp}/serving"  # /tmp/tfoy-test/<id>/serving: on HDFS, and made on the local disk too
    hdfs_base, local_base = absolute_uri(bare), Path(bare)
    request.addfinalizer(lambda: shutil.rmtree(Path(hdfs_tmp), ignore_errors=True))
    for v in (1, 2, 3):
        fake_version(hdfs_base, v)
        (local_base / str(v)).mkdir(parents=True)
    done = run_cli("tfoy", "model", "prune", bare, "--keep", "1", check=False)
    assert done.returncode == 2, done
    assert "ambiguous" in done.stderr and f"file://{bare}" in done.stderr and f"{hdfs_base}" in done.stderr
    assert sorted(i.uri.rsplit("/", 1)[1] for i in fs.ls(hdfs_base)) == ["1", "2", "3"]
    assert local_versions(local_base) == [1, 2, 3]
    # said explicitly, each side is pruned, and only that side
    out = run_cli("tfoy", "model", "prune", f"file://{local_base}", "--keep", "1").stdout
    assert "removed versions [1, 2]" in out and local_versions(local_base) == [3]
    assert sorted(p.name for p in local_base.iterdir()) == ["3"]  # nothing half-deleted left behind
    from hdfs_io.export import list_versions

    assert list_versions(hdfs_base) == [1, 2, 3]
    assert "removed versions [1]" in run_cli("tfoy", "model", "prune", hdfs_base, "--keep", "2").stdout
    assert list_versions(hdfs_base) == [2, 3]
    missing = run_cli("tfoy", "model", "prune", f"file://{tmp_path}/nope", "--keep", "1", check=False)
    assert missing.returncode == 2 and f"{tmp_path}/nope: no such folder" in missing.stderr


def test_model_list_names_a_missing_or_empty_base(hdfs_tmp):
    from tests.conftest import run_cli

    missing = run_cli("tfoy", "model", "list", f"{hdfs_tmp}/none", check=False)
    assert missing.returncode == 2 and f"{hdfs_tmp}/none: no such export base" in missing.stderr
    fs.makedirs(f"{hdfs_tmp}/empty")
    empty = run_cli("tfoy", "model", "list", f"{hdfs_tmp}/empty", check=False)
    assert empty.returncode == 1 and "no complete version" in empty.stderr


def test_two_pulls_at_once_both_succeed(hdfs_tmp, tmp_path):
    from concurrent.futures import ThreadPoolExecutor

    base = f"{hdfs_tmp}/export"
    fake_version(base, 1)
    serving = tmp_path / "serving"
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda _: pull_latest(base, serving), range(4)))
    assert {r.version for r in results} == {1} and any(r.pulled for r in results)
    assert sorted(p.name for p in serving.iterdir()) == ["1"]
    assert (serving / "1" / "saved_model.pb").read_bytes() == b"model 1"


def test_a_local_version_that_is_not_a_savedmodel_is_named_not_reported_as_there(hdfs_tmp, tmp_path):
    """The defect: a file, or an empty folder, at <model_base_path>/1 was "already there", and TF Serving was
    left with junk to load."""
    from hdfs_io.errors import PathError

    base = f"{hdfs_tmp}/export"
    fake_version(base, 1)
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "1").write_text("junk")
    (tmp_path / "b" / "1").mkdir(parents=True)
    for serving in (tmp_path / "a", tmp_path / "b"):
        with pytest.raises(PathError, match=f"{serving}/1: not a SavedModel \\(no saved_model.pb\\)"):
            pull_latest(base, serving)


def test_a_version_folder_with_leading_zeros_is_not_taken_for_a_version(hdfs_tmp, tmp_path):
    """It was listed as 7, then looked for at <base>/7: "SavedModel file does not exist at .../7"."""
    from hdfs_io.export import list_versions

    base = f"{hdfs_tmp}/export"
    fake_version(base, 1)
    fake_version(base, 7)
    fs.rename(f"{base}/7", f"{base}/0007")
    assert list_versions(base) == [1]
    assert pull_latest(base, tmp_path / "s").version == 1
