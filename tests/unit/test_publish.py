"""hdfs_io.publish on the local backend (the HDFS side runs in every export, checkpoint and upload test)."""

from __future__ import annotations

import pytest

from hdfs_io import fs
from hdfs_io.publish import publish, publish_bytes, temporary_beside


def _names(folder) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_the_temporary_is_hidden_beside_the_target_and_unique(tmp_path):
    target = f"{tmp_path.as_uri()}/model/7"
    a, b = temporary_beside(target), temporary_beside(target)
    assert a != b
    assert a.startswith(f"{tmp_path.as_uri()}/model/.7.") and a.endswith(".tmp")


def test_a_clean_exit_renames_into_place(tmp_path):
    with publish(f"{tmp_path.as_uri()}/out.txt") as p:
        fs.write_bytes(p.tmp, b"whole")
        assert _names(tmp_path) == [p.tmp.rsplit("/", 1)[1]]  # only the hidden name while writing
    assert _names(tmp_path) == ["out.txt"]
    assert (tmp_path / "out.txt").read_bytes() == b"whole"


def test_an_error_leaves_the_target_as_it_was_and_no_temporary(tmp_path):
    (tmp_path / "out.txt").write_bytes(b"old")
    with pytest.raises(RuntimeError, match="half way"), publish(f"{tmp_path.as_uri()}/out.txt", replace=True) as p:
        fs.write_bytes(p.tmp, b"ha")
        raise RuntimeError("half way")
    assert _names(tmp_path) == ["out.txt"]
    assert (tmp_path / "out.txt").read_bytes() == b"old"


def test_without_replace_an_existing_target_is_kept(tmp_path):
    (tmp_path / "out.txt").write_bytes(b"theirs")
    with pytest.raises(FileExistsError), publish(f"{tmp_path.as_uri()}/out.txt") as p:
        fs.write_bytes(p.tmp, b"mine")
    assert (tmp_path / "out.txt").read_bytes() == b"theirs"
    assert _names(tmp_path) == ["out.txt"]


def test_a_failed_commit_can_be_retried(tmp_path):
    (tmp_path / "out.txt").write_bytes(b"theirs")
    pending = publish(f"{tmp_path.as_uri()}/out.txt")
    fs.write_bytes(pending.tmp, b"mine")
    with pytest.raises(FileExistsError):
        pending.commit()
    (tmp_path / "out.txt").unlink()  # the caller decided theirs is no good
    assert pending.commit().endswith("/out.txt")
    pending.abort()  # no-op once committed
    assert (tmp_path / "out.txt").read_bytes() == b"mine"


def test_replace_swaps_a_whole_folder(tmp_path):
    old = tmp_path / "data"
    (old / "train").mkdir(parents=True)
    (old / "train" / "part-0").write_bytes(b"old")
    with publish(f"{tmp_path.as_uri()}/data", replace=True) as p:
        fs.makedirs(f"{p.tmp}/test")
        fs.write_bytes(f"{p.tmp}/test/part-0", b"new")
    assert _names(tmp_path) == ["data"]  # neither the old folder set aside nor the temporary remains
    assert _names(old) == ["test"]


def test_a_failed_folder_swap_puts_the_old_one_back(tmp_path, monkeypatch):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "keep").write_bytes(b"old")
    real = fs.rename

    def fails_into_place(src, dst, overwrite=False):
        if dst.endswith("/data") and ".tmp" in src:
            raise ConnectionError("NameNode went away")
        return real(src, dst, overwrite)

    monkeypatch.setattr(fs, "rename", fails_into_place)
    with pytest.raises(ConnectionError), publish(f"{tmp_path.as_uri()}/data", replace=True) as p:
        fs.makedirs(p.tmp)
    assert _names(tmp_path) == ["data"]
    assert (tmp_path / "data" / "keep").read_bytes() == b"old"


def test_publish_bytes_replaces_a_file(tmp_path):
    target = f"{tmp_path.as_uri()}/h.json"
    publish_bytes(target, b"1")
    publish_bytes(target, b"2")
    assert (tmp_path / "h.json").read_bytes() == b"2" and _names(tmp_path) == ["h.json"]


@pytest.mark.parametrize("kwargs, message", [
    ({"version": -1}, "version: a whole number >= 0"), ({"version": "v2"}, "version: a whole number >= 0"),
    ({"keep": 0}, "keep: a whole number >= 1"), ({"keep": "2"}, "keep: a whole number >= 1"),
])
def test_export_checks_version_and_keep_before_writing_anything(kwargs, message, tmp_path):
    """A bad keep= used to fail only after the new version was published (a retried task then exported again)."""
    from hdfs_io import export

    with pytest.raises(ValueError, match=message):
        export.export_saved_model(object(), f"file://{tmp_path}/base", **kwargs)
    assert not (tmp_path / "base").exists()


def test_a_folder_is_never_replaced_by_a_file(tmp_path):
    """The defect: publish_bytes (replace=True by default) onto a data set's folder swapped the whole folder for one
    file, the parts gone."""
    (tmp_path / "train").mkdir()
    (tmp_path / "train" / "part-0").write_bytes(b"theirs")
    with pytest.raises(IsADirectoryError, match=f"{tmp_path.as_uri()}/train: a folder, not replaced by a file"):
        publish_bytes(f"{tmp_path.as_uri()}/train", b"mine")
    assert _names(tmp_path) == ["train"] and (tmp_path / "train" / "part-0").read_bytes() == b"theirs"


def test_a_relative_target_is_home_relative_as_for_every_helper(tmp_path, monkeypatch):
    monkeypatch.delenv("HADOOP_CONF_DIR", raising=False)  # defaultFS file://: relative to the working folder
    monkeypatch.chdir(tmp_path)
    assert publish_bytes("out.txt", b"x") == f"file://{tmp_path}/out.txt"
    assert (tmp_path / "out.txt").read_bytes() == b"x"
