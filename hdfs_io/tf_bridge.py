"""TensorFlow's filesystem for hdfs:// and viewfs://, and the private schemes hdfs_io's readers stream through.

TF 2.21 has no hdfs:// (tensorflow-io does not load on it). native/tf_bridge.cc is a TF filesystem plugin whose
file operations are served by hdfs-native's Rust client (native/hdfs_reader, called by the plugin directly on TF's
threads, no GIL, no JVM). It registers:

- `hdfs://` and `viewfs://`: TF's whole filesystem, so users' ordinary code runs unchanged (`tf.io.gfile`,
  `tf.data.TFRecordDataset`, Keras saving and callbacks, `tf.train.Checkpoint`, SavedModel, `tf.summary`,
  TensorBoard). Files written are published whole at close (see native/hdfs_reader/src/fs.rs).
- `tfoyraw://` and `tfoyrec://`: hdfs_io's checked readers (datasets.py). TF's TFRecordDataset / TextLineDataset
  read HDFS files front to back as the bytes arrive, and `tfoyrec` checks each TFRecord's framing and CRCs as
  bytes pass, so a corrupt record fails with the file and byte offset named. Without the Rust reader these reads
  are served by Python callbacks here (and hdfs:// says it needs the reader).

`import hdfs_io` registers the plugin as soon as TensorFlow is imported (or at once, if it already is):
`register_when_tensorflow_loads()`. `./build.sh setup` builds both libraries (`python -m hdfs_io.tf_bridge`): the
plugin with the system C++ compiler against the installed TF's headers (a few seconds; the first use does it too
when it is missing), the Rust reader with cargo (about a minute; only at setup). Both land in native/ (and a cache
shared by clones), named by a hash of their sources, and ship with the project code to YARN containers. Without a
C++ compiler `get()` is None and readers stage files instead. Process-wide by nature: TF's filesystem registry is.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import itertools
import json
import logging
import os
import shutil
import subprocess
import tempfile
import threading
import weakref
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hdfs_io import fs
from hdfs_io.paths import HADOOP_SCHEMES

log = logging.getLogger(__name__)

NATIVE = Path(__file__).resolve().parent / "native"
PLUGIN_SOURCE = NATIVE / "tf_bridge.cc"
READER_CRATE = NATIVE / "hdfs_reader"
CRC_SHIM = NATIVE / "crc_shim"  # patched in for hdfs-native's `crc` (hardware CRC32C), see its src/lib.rs
# applied to hdfs-native's own source before the build (a file close waited 500 ms for nothing); see the patch
HDFS_NATIVE_PATCH = NATIVE / "hdfs_native_close.patch"
RAW, RECORDS = "tfoyraw", "tfoyrec"

# TF_Code values (tensorflow/c/tf_status.h) the Python callbacks report
_NOT_FOUND, _PERMISSION_DENIED, _INTERNAL, _UNAVAILABLE = 5, 7, 13, 14

_OPEN = ctypes.CFUNCTYPE(ctypes.c_int64, ctypes.c_char_p, ctypes.POINTER(ctypes.c_int64), ctypes.c_void_p,
                         ctypes.c_size_t)
_READ = ctypes.CFUNCTYPE(ctypes.c_int64, ctypes.c_int64, ctypes.c_uint64, ctypes.c_size_t, ctypes.c_void_p,
                         ctypes.c_void_p, ctypes.c_size_t)
_CLOSE = ctypes.CFUNCTYPE(None, ctypes.c_int64)
_DONE = ctypes.CFUNCTYPE(None, ctypes.c_char_p, ctypes.c_uint64, ctypes.c_uint64, ctypes.c_char_p)


def _key(*parts: bytes) -> str:
    return hashlib.sha256(b"\0".join(parts)).hexdigest()[:12]


def plugin_path() -> Path:
    """Where the plugin for this source and this TF lives (it may not be built yet)."""
    import tensorflow as tf

    return NATIVE / f"libtfoy_tf_bridge-{_key(PLUGIN_SOURCE.read_bytes(), tf.__version__.encode())}.so"


def reader_sources() -> list[Path]:
    """What the Rust reader is built from, and so what its name is derived from (containers need them all)."""
    files = [READER_CRATE / "Cargo.lock", HDFS_NATIVE_PATCH]
    for crate in (READER_CRATE, CRC_SHIM):
        files += [crate / "Cargo.toml", *sorted((crate / "src").glob("*.rs"))]
    return files


def reader_path() -> Path:
    """Where the Rust reader for these sources lives (it may not be built yet)."""
    return NATIVE / f"libtfoy_hdfs_reader-{_key(*(f.read_bytes() for f in reader_sources()))}.so"


def _cache_dir() -> Path:
    return Path(os.environ.get("TFOY_CACHE", os.path.expanduser("~/.cache/tfoy"))) / "native"


def _install(target: Path, build: Any) -> Path:
    """Puts the library in place: from the cache shared by all clones (keyed by the same hash), else by running
    build(tmp) and caching what it made. Older builds of the same library are removed from native/."""
    cached = _cache_dir() / target.name
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
    target_dir = target_dir or os.environ.get("CARGO_TARGET_DIR") or str(_cache_dir() / "cargo-target")

    def cargo_build(tmp: str) -> None:
        crate = stage_reader_crate(cargo, target_dir)
        _run([cargo, "build", "--release", "--offline", "--target-dir", target_dir], target.name, cwd=crate)
        shutil.copyfile(Path(target_dir) / "release" / "libtfoy_hdfs_reader.so", tmp)

    return _install(target, cargo_build)


def stage_reader_crate(cargo: str, target_dir: str) -> Path:
    """A copy of the reader's crates under target_dir, built against hdfs-native with HDFS_NATIVE_PATCH applied.

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
    _run(["patch", "-p1", "--forward", "-i", str(HDFS_NATIVE_PATCH)], HDFS_NATIVE_PATCH.name,
         cwd=stage / "hdfs-native")
    manifest = stage / READER_CRATE.name / "Cargo.toml"
    text = manifest.read_text()
    if text.rstrip().rsplit("\n[", 1)[-1].split("]")[0] != "patch.crates-io":
        raise RuntimeError(f"{READER_CRATE / 'Cargo.toml'} must end with its [patch.crates-io] section")
    manifest.write_text(text.rstrip() + '\nhdfs-native = { path = "../hdfs-native" }\n')
    return stage / READER_CRATE.name


@dataclass
class _Open:
    """A file open through the Python callbacks."""

    reader: Any
    uri: str
    pos: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)


@dataclass(frozen=True)
class LocalReads:
    """Files the Rust reader read from local block replicas, files it streamed from DataNodes, local reads that
    failed mid-file (then served by the DataNode), and why the last file was not, or no longer, read locally."""

    local_files: int
    streamed_files: int
    fallbacks: int
    last_reason: str


class Bridge:
    """The loaded plugin, its reader (Rust, or the Python callbacks below) and the statistics it reports to."""

    def __init__(self, plugin: Path, reader: Path | None):
        import tensorflow as tf

        self.backend = "rust" if reader else "python"
        self._files: dict[int, _Open] = {}
        self._handles = itertools.count(1)
        self._stats: weakref.WeakValueDictionary[int, Any] = weakref.WeakValueDictionary()
        self._tokens = itertools.count(1)
        self._passes = itertools.count(1)
        self._passes_done: dict[str, tuple[int, str | None]] = {}  # per-pass name -> (lines seen, error)
        # ctypes keeps no reference to callbacks: the bridge (alive as long as the process) does
        self._done = _DONE(self._file_done)
        self._fs_ops: int | None = None  # the Rust reader's table of filesystem functions (hdfs://, viewfs://)
        if reader is not None:
            self._reader = ctypes.CDLL(str(reader))
            functions = [ctypes.cast(getattr(self._reader, f"tfoy_hdfs_{op}"), ctypes.c_void_p)
                         for op in ("open", "read", "close")]
            self._reader.tfoy_hdfs_fs_ops.restype = ctypes.c_void_p
            self._fs_ops = self._reader.tfoy_hdfs_fs_ops()
        else:
            self._callbacks = (_OPEN(self._open), _READ(self._read), _CLOSE(self._close))
            functions = [ctypes.cast(c, ctypes.c_void_p) for c in self._callbacks]
        self._functions = [*functions, ctypes.cast(self._done, ctypes.c_void_p)]
        self._plugin = ctypes.CDLL(str(plugin))
        self._plugin.tfoy_bridge_set_callbacks.argtypes = [ctypes.c_void_p] * 4
        self._plugin.tfoy_bridge_set_fs_ops.argtypes = [ctypes.c_void_p]
        self.activate()
        if RECORDS not in tf.io.gfile.get_registered_schemes():
            tf.experimental.register_filesystem_plugin(str(plugin))

    def activate(self) -> None:
        """Makes this bridge's reader serve the plugin (there is one plugin per process; tests switch readers)."""
        self._plugin.tfoy_bridge_set_callbacks(*self._functions)
        self._plugin.tfoy_bridge_set_fs_ops(self._fs_ops)

    def local_reads(self) -> LocalReads:
        """How the Rust reader has read files so far in this process (short-circuit local reads, see
        native/hdfs_reader/src/local.rs); all zero for the Python reader, which always streams."""
        if self.backend != "rust":
            return LocalReads(0, 0, 0, "the Python reader streams every file")
        counts = (ctypes.c_int64 * 3)()
        reason = ctypes.create_string_buffer(1024)
        self._reader.tfoy_hdfs_local_stats(counts, reason, ctypes.c_size_t(len(reason)))
        return LocalReads(counts[0], counts[1], counts[2], reason.value.decode(errors="replace"))

    def name(self, uri: str, records: bool, stats: Any = None) -> str:
        """The name TF opens for a file: records=True checks TFRecord framing and CRCs as it streams. Files read
        are counted in stats (files_streamed, bytes_streamed) when TF is done with them."""
        token = 0
        if stats is not None:
            token = next(self._tokens)
            self._stats[token] = stats
        return f"{RECORDS if records else RAW}://{token}/{fs.absolute_uri(uri)}"

    def one_pass(self, name: str) -> str:
        """A name for one pass over a file (`scheme://token.pass/uri`): when TF is done with it, the number of
        lines the plugin saw is kept for `lines_seen`."""
        scheme, rest = name.split("://", 1)
        token, uri = rest.split("/", 1)
        return f"{scheme}://{token}.{next(self._passes)}/{uri}"

    def pass_done(self, name: str) -> tuple[int, str | None] | None:
        """For a one_pass() file TF is done with: (lines seen, what went wrong reading it or None), else None.
        Lines are newlines plus an unterminated last line."""
        return self._passes_done.pop(name, None)

    # -- callbacks, on TF's threads (ctypes takes the GIL); they must not raise --
    def _file_done(self, name: bytes, nbytes: int, lines: int, error: bytes | None) -> None:
        try:
            text = name.decode()
            token = text.split("://", 1)[1].split("/", 1)[0]
            if "." in token:
                self._passes_done[text] = (lines, error.decode(errors="replace") if error else None)
            stats = self._stats.get(int(token.split(".")[0]))
            if stats is not None:
                stats.add(files_streamed=1, bytes_streamed=nbytes)
        except Exception:  # noqa: BLE001 - statistics only
            log.exception("tfoy HDFS bridge: counting %r", name)

    def _open(self, name: bytes, size: Any, err: int, errlen: int) -> int:
        try:
            uri = name.decode()
            if not uri.startswith(tuple(f"{s}://" for s in HADOOP_SCHEMES)):
                uri = uri.split("://", 1)[1].split("/", 1)[1]  # a bridge name: scheme://token/uri
            reader = fs.hdfs_reader(uri)
            size[0] = reader.size
            handle = next(self._handles)
            self._files[handle] = _Open(reader, uri)
            return handle
        except BaseException as exc:  # noqa: BLE001 - reported to TF as a status
            return _report(exc, err, errlen)

    def _read(self, handle: int, offset: int, n: int, buf: int, err: int, errlen: int) -> int:
        f = self._files.get(handle)
        try:
            assert f is not None, f"no open file {handle}"
            got = 0
            with f.lock:
                if f.pos != offset:
                    f.reader.seek(offset)
                while got < n:
                    chunk = f.reader.read(min(n - got, fs.IO_CHUNK))
                    if not chunk:
                        break
                    ctypes.memmove(buf + got, chunk, len(chunk))
                    got += len(chunk)
                f.pos = offset + got
            return got
        except BaseException as exc:  # noqa: BLE001
            return _report(fs.translate_error(exc, f.uri) if f else exc, err, errlen)

    def _close(self, handle: int) -> None:
        self._files.pop(handle, None)


def _report(exc: BaseException, err: int, errlen: int) -> int:
    code = _INTERNAL
    if isinstance(exc, FileNotFoundError):
        code = _NOT_FOUND
    elif isinstance(exc, PermissionError):
        code = _PERMISSION_DENIED
    elif isinstance(exc, OSError):
        code = _UNAVAILABLE
    message = (str(exc) or type(exc).__name__).encode()[: errlen - 1]
    ctypes.memmove(err, message + b"\0", len(message) + 1)
    return -code


@functools.cache
def get() -> Bridge | None:
    """The process's bridge, loaded on first use; None (readers then stage files) when the plugin cannot be
    built or loaded. TFOY_HDFS_READER=python uses the Python callbacks even when the Rust reader is built."""
    try:
        plugin = build_plugin()
    except Exception as exc:  # noqa: BLE001 - a missing compiler must not stop reading; it only costs speed
        log.warning("HDFS streaming into TensorFlow unavailable, files will be staged instead: %s", exc)
        return None
    try:
        reader: Path | None = reader_path()
    except OSError as exc:  # its sources did not travel (an old code zip): the Python callbacks serve
        log.info("Rust HDFS reader unavailable (%s)", exc)
        reader = None
    if reader is None or not reader.exists() or os.environ.get("TFOY_HDFS_READER") == "python":
        log.info("Rust HDFS reader not built (./build.sh setup builds it): Python serves TF's reads")
        reader = None
    return Bridge(plugin, reader)


def register() -> Bridge | None:
    """Registers hdfs:// and viewfs:// (and the private schemes) with TensorFlow now; None when the plugin cannot be
    built or loaded (the reason is logged)."""
    bridge = get()
    if bridge is not None and bridge.backend != "rust":
        log.warning("hdfs:// and viewfs:// for TensorFlow need the Rust HDFS reader (./build.sh setup builds it)")
    if bridge is not None and bridge.backend == "rust" and _short_circuit_off_by_kerberos():
        log.info("short-circuit local reads are not made on this Kerberized cluster (the Rust reader speaks only "
                 "SIMPLE authentication to the DataNode): TF's hdfs:// reads stream from the DataNodes")
    return bridge


def _short_circuit_off_by_kerberos() -> bool:
    """Said once per process (one bridge per process), not once per file."""
    from hdfs_io import kerberos
    from hdfs_io.paths import hadoop_conf_value

    wanted = (hadoop_conf_value("dfs.client.read.shortcircuit", "hdfs-site.xml") or "").lower() == "true"
    return wanted and kerberos.enabled()


def register_when_tensorflow_loads() -> None:
    """Registers the filesystem once TensorFlow is imported (at once if it is), so hdfs:// works in TF's own APIs
    without loading TF in processes that never use it. A failure is logged, never raised into the user's import."""
    from hdfs_io.import_hooks import when_imported

    when_imported("tensorflow", lambda _tf: register())


if __name__ == "__main__":  # ./build.sh setup: python -m hdfs_io.tf_bridge
    print(build_plugin())
    print(build_reader())
