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
`register_when_tensorflow_loads()`. native_build.py builds both libraries (at `./build.sh setup`); they ship with
the project code to YARN containers. Without a C++ compiler `get()` is None and readers stage files instead.
Process-wide by nature: TF's filesystem registry is.
"""

from __future__ import annotations

import ctypes
import functools
import itertools
import logging
import os
import threading
import weakref
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hdfs_io import fs
from hdfs_io.paths import HADOOP_SCHEMES

log = logging.getLogger(__name__)

RAW, RECORDS = "tfoyraw", "tfoyrec"

# TF_Code values (tensorflow/c/tf_status.h) the Python callbacks report
_NOT_FOUND, _PERMISSION_DENIED, _INTERNAL, _UNAVAILABLE = 5, 7, 13, 14

_OPEN = ctypes.CFUNCTYPE(ctypes.c_int64, ctypes.c_char_p, ctypes.POINTER(ctypes.c_int64), ctypes.c_void_p,
                         ctypes.c_size_t)
_READ = ctypes.CFUNCTYPE(ctypes.c_int64, ctypes.c_int64, ctypes.c_uint64, ctypes.c_size_t, ctypes.c_void_p,
                         ctypes.c_void_p, ctypes.c_size_t)
_CLOSE = ctypes.CFUNCTYPE(None, ctypes.c_int64)
_DONE = ctypes.CFUNCTYPE(None, ctypes.c_char_p, ctypes.c_uint64, ctypes.c_uint64, ctypes.c_char_p)


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
    from hdfs_io.native_build import build_plugin, reader_path  # not at import: `python -m` runs that module

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
    without loading TF in processes that never use it, and streams Keras 3's `.keras` saves to hdfs:// once Keras
    is (hdfs_io/keras_save.py). A failure is logged, never raised into the user's import."""
    from hdfs_io import keras_save
    from hdfs_io.import_hooks import when_imported

    when_imported("tensorflow", lambda _tf: register())
    when_imported("keras", keras_save.install)
