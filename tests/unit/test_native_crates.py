"""The Rust crates' own tests, built against the reader's lock file (hdfs_io/native): the crc stand-in must give
the catalogue's check values, or hdfs-native would reject every DataNode packet (or, worse, accept bad ones)."""

from __future__ import annotations

import os
import shutil
import subprocess

from hdfs_io import tf_bridge


def test_crc_stand_in_matches_the_catalogue():
    cargo = shutil.which("cargo") or os.path.expanduser("~/.cargo/bin/cargo")
    done = subprocess.run(
        [cargo, "test", "--release", "--locked", "--offline", "-p", "crc",
         "--target-dir", str(tf_bridge._cache_dir() / "cargo-target")],
        cwd=tf_bridge.READER_CRATE, capture_output=True, text=True, timeout=600,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    assert "test tests::check_values ... ok" in done.stdout and "test tests::digest_in_pieces ... ok" in done.stdout
