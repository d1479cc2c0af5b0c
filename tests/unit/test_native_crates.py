"""The Rust crates' own tests, built as the reader ships (its lock file, hdfs-native patched; hdfs_io/native):
the crc stand-in must give the catalogue's check values, or hdfs-native would reject every DataNode packet (or,
worse, accept bad ones); the short-circuit reader must check every chunk it hands out, whatever the range (its
cluster side is in tests/integration/test_hdfs_io_short_circuit.py)."""

from __future__ import annotations

import os
import shutil
import subprocess

from hdfs_io import native_build


def _cargo_test(*args: str) -> str:
    cargo = shutil.which("cargo") or os.path.expanduser("~/.cargo/bin/cargo")
    target_dir = str(native_build.cache_dir() / "cargo-target")
    done = subprocess.run(
        [cargo, "test", "--release", "--offline", *args, "--target-dir", target_dir],
        cwd=native_build.stage_reader_crate(cargo, target_dir), capture_output=True, text=True, timeout=600,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    return done.stdout


def test_crc_stand_in_matches_the_catalogue():
    out = _cargo_test("-p", "crc")
    assert "test tests::check_values ... ok" in out and "test tests::digest_in_pieces ... ok" in out


def test_local_replica_reads_check_every_chunk():
    out = _cargo_test("-p", "tfoy_hdfs_reader", "--lib")
    for name in ("reads_any_range_and_checks_it", "a_flipped_byte_fails_its_chunk", "namenodes_of_a_nameservice",
                 "sizes_as_hadoop_reads_them"):
        assert f"test local::tests::{name} ... ok" in out, out


def test_hdfs_io_runs_the_patched_python_client():
    """hdfs_io's own writes go through hdfs-native's Python wheel; the published one waits 500 ms at every close
    and fsyncs every block. `./build.sh setup` rebuilds it with the reader's patches and installs it."""
    wheels = sorted(native_build.python_client_dir().glob("*.whl"))
    assert wheels, f"no patched hdfs-native wheel in {native_build.python_client_dir()}: ./build.sh setup builds it"
    assert native_build.python_client_installed(wheels[0]), f"hdfs-native is not installed from {wheels[0]}"
