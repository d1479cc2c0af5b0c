"""Builds hdfs_io's native parts: the TF filesystem plugin (C++), the Rust HDFS reader it calls, and hdfs-native's
Python wheel with the same patches.

`./build.sh setup` runs this module (`python -m hdfs_io.native_build`): the plugin is compiled with the system C++
compiler against the installed TF's headers (a few seconds; tf_bridge's first use does it too when it is missing),
the Rust reader with cargo (about a minute; only at setup). Both land in native/ (and a cache shared by clones),
named by a hash of their sources, so a container finds the one matching the code it was shipped with. The wheel
(about five minutes, once per patch set) is installed into the running venv, so the env archive ships it.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import shutil
import subprocess
import sys
import tarfile
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
    NATIVE / "hdfs_native_sync_on_close.patch",  # no fsync at each block's end (Java's client: only with SYNC_BLOCK)
)


def _key(*parts: bytes) -> str:
    return hashlib.sha256(b"\0".join(parts)).hexdigest()[:12]


def plugin_path() -> Path:
    """Where the plugin for this source and this TF lives (it may not be built yet)."""
    import tensorflow as tf

    return NATIVE / f"libtfoy_tf_bridge-{_key(PLUGIN_SOURCE.read_bytes(), tf.__version__.encode())}.so"


def reader_sources() -> list[Path]:
    """What the Rust reader is built from, and so what its name is derived from (containers need them all)."""
    return [READER_CRATE / "Cargo.lock", *HDFS_NATIVE_PATCHES, *_crate_files(READER_CRATE), *_crate_files(CRC_SHIM)]


def _reader_key() -> str:
    return _key(*(f.read_bytes() for f in reader_sources()))


def reader_path() -> Path:
    """Where the Rust reader for these sources lives (it may not be built yet)."""
    return NATIVE / f"libtfoy_hdfs_reader-{_reader_key()}.so"


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
        os.chmod(tmp, 0o644)  # mkstemp's 0600 would keep the library from other users of a shared checkout
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    for old in NATIVE.glob(target.name.rsplit("-", 1)[0] + "-*.so"):
        if old != target:
            old.unlink(missing_ok=True)
    return target


def _crate_files(crate: Path) -> list[Path]:
    return [crate / "Cargo.toml", *sorted((crate / "src").glob("*.rs"))]


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


def _apply_patches(crate: Path) -> None:
    for patch in HDFS_NATIVE_PATCHES:
        _run(["patch", "-p1", "--forward", "-i", str(patch)], patch.name, cwd=crate)


def stage_reader_crate(cargo: str, target_dir: str) -> Path:
    """A copy of the reader's crates under target_dir, built against hdfs-native with HDFS_NATIVE_PATCHES applied.

    Why a copy: patching hdfs-native in by path rewrites Cargo.lock's entry for it (a path has no checksum), and
    the lock in the project must keep pinning the published crate that the patch applies to. The crates come from
    crates.io (`cargo metadata --locked` fetches and unpacks them); the staged build then runs `--offline`, so
    nothing but hdfs-native's source can differ from the lock. The copy is named by the sources' hash and kept:
    Cargo decides what to rebuild by mtimes, and a fresh copy of the same sources made it rebuild everything
    (70 s of every test run); a change of source is a new folder. Returns the staged hdfs_reader folder."""
    meta = subprocess.run([cargo, "metadata", "--locked", "--format-version", "1"], cwd=READER_CRATE,
                          capture_output=True, text=True, timeout=900)
    if meta.returncode != 0:
        raise RuntimeError(f"fetching the reader's crates failed (cargo metadata --locked):\n{meta.stderr[-4000:]}")
    (pristine,) = (Path(p["manifest_path"]).parent for p in json.loads(meta.stdout)["packages"]
                   if p["name"] == "hdfs-native")
    stage = Path(target_dir) / f"staged-src-{_reader_key()}"
    if (stage / ".complete").exists():
        return stage / READER_CRATE.name
    for old in Path(target_dir).glob("staged-src*"):
        shutil.rmtree(old, ignore_errors=True)
    ignore = shutil.ignore_patterns("target", "__pycache__")
    for crate in (READER_CRATE, CRC_SHIM):
        shutil.copytree(crate, stage / crate.name, ignore=ignore)
    shutil.copytree(pristine, stage / "hdfs-native", ignore=ignore)
    _apply_patches(stage / "hdfs-native")
    manifest = stage / READER_CRATE.name / "Cargo.toml"
    text = manifest.read_text()
    if text.rstrip().rsplit("\n[", 1)[-1].split("]")[0] != "patch.crates-io":
        raise RuntimeError(f"{READER_CRATE / 'Cargo.toml'} must end with its [patch.crates-io] section")
    manifest.write_text(text.rstrip() + '\nhdfs-native = { path = "../hdfs-native" }\n')
    (stage / ".complete").touch()
    return stage / READER_CRATE.name


def python_client_dir() -> Path:
    """Where hdfs-native's patched wheel for the installed version and these patches is cached."""
    version = importlib.metadata.version("hdfs-native")
    key = _key(version.encode(), *(f.read_bytes() for f in (*HDFS_NATIVE_PATCHES, *_crate_files(CRC_SHIM))))
    return cache_dir() / f"hdfs-native-{version}-{key}"


def build_python_client() -> Path:
    """hdfs-native's Python wheel rebuilt from its sdist with HDFS_NATIVE_PATCHES and the CRC shim, so hdfs_io's
    own writes (markers, `fs.put`, env archives, dfutil's part files) close as the TF plugin's do: with the
    published wheel every file closed waited 500 ms, and every block was fsynced. Unless cached (by version and
    patches)."""
    cached = python_client_dir()
    if wheels := sorted(cached.glob("*.whl")):
        return wheels[0]
    version = importlib.metadata.version("hdfs-native")
    with tempfile.TemporaryDirectory(prefix="tfoy-hdfs-native-") as tmp:
        _run([sys.executable, "-m", "pip", "download", "--quiet", "--disable-pip-version-check", "--no-deps",
              "--no-binary", "hdfs-native", f"hdfs-native=={version}", "-d", tmp], "hdfs-native's sdist")
        (sdist,) = Path(tmp).glob("hdfs_native-*.tar.gz")
        with tarfile.open(sdist) as archive:
            archive.extractall(tmp, filter="data")
        src = Path(tmp) / sdist.name.removesuffix(".tar.gz")
        _apply_patches(src / "rust")  # the sdist holds the crate under rust/
        shutil.copytree(CRC_SHIM, src / "crc_shim", ignore=shutil.ignore_patterns("target"))
        manifest = src / "Cargo.toml"  # the workspace of rust/ and python/
        manifest.write_text(manifest.read_text().rstrip() + '\n\n[patch.crates-io]\ncrc = { path = "crc_shim" }\n')
        built = Path(tmp) / "wheel"
        _run([sys.executable, "-m", "pip", "wheel", "--quiet", "--disable-pip-version-check", "--no-deps",
              "-w", str(built), str(src)], "hdfs-native's wheel")
        (made,) = built.glob("*.whl")
        cached.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(made, cached / f".{made.name}.{os.getpid()}")
        os.replace(cached / f".{made.name}.{os.getpid()}", cached / made.name)
    return cached / made.name


def python_client_installed(wheel: Path) -> bool:
    """Whether the running environment's hdfs-native was installed from this wheel (pip's direct_url.json)."""
    direct = importlib.metadata.distribution("hdfs-native").read_text("direct_url.json") or "{}"
    return json.loads(direct).get("url", "").endswith(f"{wheel.parent.name}/{wheel.name}")


def install_python_client() -> Path:
    wheel = build_python_client()
    if not python_client_installed(wheel):
        _run([sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-deps",
              "--force-reinstall", str(wheel)], "installing hdfs-native's wheel")
    return wheel


if __name__ == "__main__":
    print(build_plugin())
    print(build_reader())
    print(install_python_client())
