"""Builds hdfs_io's two native libraries: the TF filesystem plugin (C++) and the Rust HDFS reader it calls.

`./build.sh setup` runs this module (`python -m hdfs_io.native_build`): the plugin is compiled with the system C++
compiler against the installed TF's headers (a few seconds; tf_bridge's first use does it too when it is missing),
the Rust reader with cargo (about a minute; only at setup). Both land in native/ (and a cache shared by clones),
named by a hash of their sources, so a container finds the one matching the code it was shipped with.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

NATIVE = Path(__file__).resolve().parent / "native"
PLUGIN_SOURCE = NATIVE / "tf_bridge.cc"
READER_CRATE = NATIVE / "hdfs_reader"
CRC_SHIM = NATIVE / "crc_shim"  # patched in for hdfs-native's `crc` (hardware CRC32C), see its src/lib.rs
# applied to hdfs-native's own source before the build, in this order; each says why
HDFS_NATIVE_PATCHES = (
    NATIVE / "hdfs_native_close.patch",  # a file close waited 500 ms for nothing
    NATIVE / "hdfs_native_packet_size.patch",  # the client's dfs.client-write-packet-size, as Java's client takes it
    NATIVE / "hdfs_native_sync_on_close.patch",  # no fsync at each block's end unless asked, as Java's client
)


def _key(*parts: bytes) -> str:
    return hashlib.sha256(b"\0".join(parts)).hexdigest()[:12]


def plugin_path() -> Path:
    """Where the plugin for this source and this TF lives (it may not be built yet)."""
    import tensorflow as tf

    return NATIVE / f"libtfoy_tf_bridge-{_key(PLUGIN_SOURCE.read_bytes(), tf.__version__.encode())}.so"


def reader_sources() -> list[Path]:
    """What the Rust reader is built from, and so what its name is derived from (containers need them all)."""
    files = [READER_CRATE / "Cargo.lock", *HDFS_NATIVE_PATCHES]
    for crate in (READER_CRATE, CRC_SHIM):
        files += [crate / "Cargo.toml", *sorted((crate / "src").glob("*.rs"))]
    return files


def reader_path() -> Path:
    """Where the Rust reader for these sources lives (it may not be built yet)."""
    return NATIVE / f"libtfoy_hdfs_reader-{_key(*(f.read_bytes() for f in reader_sources()))}.so"


def cache_dir() -> Path:
    return Path(os.environ.get("TFOY_CACHE", os.path.expanduser("~/.cache/tfoy"))) / "native"


def _install(target: Path, build: Any) -> Path:
    """Puts the library in place: from the cache shared by all clones (keyed by the same hash), else by running
    build(tmp) and caching what it made. Older builds of the same library are removed from native/."""
    cached = cache_dir() / target.name
    fd, tmp = tempfile.mkstemp(prefix=target.name + ".", dir=NATIVE)
    os.close(fd)
    try:
        if cached.exists():
            shutil.copyfile(cached, tmp)
        else:
            build(tmp)
            cached.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(tmp, f"{cached}.{os.getpid()}")
            os.replace(f"{cached}.{os.getpid()}", cached)
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    for old in NATIVE.glob(target.name.rsplit("-", 1)[0] + "-*.so"):
        if old != target:
            old.unlink(missing_ok=True)
    return target


def _run(cmd: list[str], what: str, **kwargs: Any) -> None:
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=900, **kwargs)
    if done.returncode != 0:
        raise RuntimeError(f"building {what} failed ({' '.join(cmd)}):\n{done.stderr[-4000:]}")


def build_plugin() -> Path:
    """Compiles the TF plugin (a few seconds) unless it is there; raises with the compiler's output."""
    import tensorflow as tf

    target = plugin_path()
    if target.exists():
        return target
    tf_dir = Path(tf.__file__).resolve().parent

    def compile_to(tmp: str) -> None:
        _run([os.environ.get("CXX", "g++"), "-O2", "-shared", "-fPIC", "-fvisibility=hidden",
              *tf.sysconfig.get_compile_flags(), str(PLUGIN_SOURCE), "-o", tmp,
              *tf.sysconfig.get_link_flags(), f"-Wl,-rpath,{tf_dir}"], target.name)

    return _install(target, compile_to)


def build_reader(target_dir: str | None = None) -> Path:
    """Builds the Rust reader with cargo unless it is there (crates come from crates.io the first time)."""
    target = reader_path()
    if target.exists():
        return target
    cargo = shutil.which("cargo") or os.path.expanduser("~/.cargo/bin/cargo")
    target_dir = target_dir or os.environ.get("CARGO_TARGET_DIR") or str(cache_dir() / "cargo-target")

    def cargo_build(tmp: str) -> None:
        crate = stage_reader_crate(cargo, target_dir)
        _run([cargo, "build", "--release", "--offline", "--target-dir", target_dir], target.name, cwd=crate)
        shutil.copyfile(Path(target_dir) / "release" / "libtfoy_hdfs_reader.so", tmp)

    return _install(target, cargo_build)


def stage_reader_crate(cargo: str, target_dir: str) -> Path:
    """A copy of the reader's crates under target_dir, built against hdfs-native with HDFS_NATIVE_PATCHES applied.

    Why a copy: patching hdfs-native in by path rewrites Cargo.lock's entry for it (a path has no checksum), and
    the lock in the project must keep pinning the published crate that the patch applies to. The crates come from
    crates.io (`cargo metadata --locked` fetches and unpacks them); the staged build then runs `--offline`, so
    nothing but hdfs-native's source can differ from the lock. Returns the staged hdfs_reader folder."""
    meta = subprocess.run([cargo, "metadata", "--locked", "--format-version", "1"], cwd=READER_CRATE,
                          capture_output=True, text=True, timeout=900)
    if meta.returncode != 0:
        raise RuntimeError(f"fetching the reader's crates failed (cargo metadata --locked):\n{meta.stderr[-4000:]}")
    (pristine,) = (Path(p["manifest_path"]).parent for p in json.loads(meta.stdout)["packages"]
                   if p["name"] == "hdfs-native")
    stage = Path(target_dir) / "staged-src"
    shutil.rmtree(stage, ignore_errors=True)
    ignore = shutil.ignore_patterns("target", "__pycache__")
    for crate in (READER_CRATE, CRC_SHIM):
        shutil.copytree(crate, stage / crate.name, ignore=ignore)
    shutil.copytree(pristine, stage / "hdfs-native", ignore=ignore)
    for patch in HDFS_NATIVE_PATCHES:
        _run(["patch", "-p1", "--forward", "-i", str(patch)], patch.name, cwd=stage / "hdfs-native")
    manifest = stage / READER_CRATE.name / "Cargo.toml"
    text = manifest.read_text()
    if text.rstrip().rsplit("\n[", 1)[-1].split("]")[0] != "patch.crates-io":
        raise RuntimeError(f"{READER_CRATE / 'Cargo.toml'} must end with its [patch.crates-io] section")
    manifest.write_text(text.rstrip() + '\nhdfs-native = { path = "../hdfs-native" }\n')
    return stage / READER_CRATE.name


if __name__ == "__main__":
    print(build_plugin())
    print(build_reader())
