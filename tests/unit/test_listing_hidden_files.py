"""Which files a reader's paths, globs and folders bring in (local files; HDFS: tests/integration)."""

from __future__ import annotations

import pytest

from hdfs_io import datasets


@pytest.fixture
def job_output(tmp_path):
    """A job's output folder: two parts, `_SUCCESS`, checksum files, a writer's temporary, `_temporary/`."""
    base = tmp_path / "out"
    (base / "_temporary" / "0").mkdir(parents=True)
    (base / "sub").mkdir()
    for name in ("part-0", "part-1", "_SUCCESS", ".x.crc", ".part-0.crc", ".part-2.tfoy-tmp-1a2b", "sub/part-3",
                 "_temporary/0/part-2"):
        (base / name).write_bytes(b"x")
    return base


@pytest.mark.parametrize("pattern,expected", [
    ("{base}", ["part-0", "part-1"]),  # a folder: its visible files, not its sub-folders
    ("{base}/*", ["part-0", "part-1", "sub/part-3"]),  # a glob matching a folder: that folder's visible files
    ("{base}/[._p]*", ["part-0", "part-1"]),
    ("{base}/**", ["part-0", "part-1", "sub/part-3"]),  # recursive: nothing from inside _temporary/ either
    ("{base}/*/part-*", ["sub/part-3"]),
])
def test_globs_and_folders_leave_out_hidden_files(job_output, pattern, expected):
    uris = datasets.expand_paths(f"file://{pattern.format(base=job_output)}")
    assert [u.removeprefix(f"file://{job_output}/") for u in uris] == expected


def test_only_hidden_matches_is_an_error_naming_the_glob_and_a_named_file_is_read(job_output):
    with pytest.raises(FileNotFoundError, match=rf"{job_output}/_\*: the glob matches only hidden files"):
        datasets.expand_paths(f"file://{job_output}/_*")
    assert datasets.expand_paths(f"file://{job_output}/_SUCCESS") == [f"file://{job_output}/_SUCCESS"]
