"""HDFS (hdfs:// and viewfs://) as a tfoy filesystem, through hdfs-native: no JVM, no libhdfs.

hdfs-native's errors are turned into the Python errors callers expect: FileNotFoundError / PermissionError /
FileExistsError naming the URI (and the HDFS user), and a NameNode that does not answer fails within a bounded
time naming its address instead of hanging in hdfs-native's retries. Files and folders are created as Hadoop's
own clients create them (fs.permissions.umask-mode).
"""

from __future__ import annotations

import functools
import io
import os
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import IO, Any

from hdfs_io.errors import HdfsIoError
from hdfs_io.filesystems import FileInfo
from hdfs_io.paths import hadoop_conf_value, hadoop_user

CONNECT_TIMEOUT_ENV = "TFOY_HDFS_CONNECT_TIMEOUT"
DEFAULT_CONNECT_TIMEOUT = 5.0
DEFAULT_NN_PORT = 8020
# Write packets unless the configuration sets the key, as the TF plugin has them (native/hdfs_reader/src/lib.rs):
# the DataNode's cost is mostly per packet, and the NameNode's default is 64 KiB. Honoured by hdfs-native as
# native_build.py builds it (native/hdfs_native_packet_size.patch).
PACKET_SIZE_KEY = "dfs.client-write-packet-size"
WRITE_PACKET_SIZE = 1 << 20


class NameNodeUnreachableError(HdfsIoError, ConnectionError):
    """No NameNode of a filesystem accepted a TCP connection within the timeout."""


def translate_error(exc: BaseException, uri: str) -> BaseException:
    """hdfs-native raises RuntimeError(RPCError(java class, message)) for most server-side errors."""
    text = str(exc)
    if isinstance(exc, FileNotFoundError) or "FileNotFoundException" in text:
        return FileNotFoundError(f"{uri}: no such file or directory")
    if isinstance(exc, PermissionError) or "AccessControlException" in text:
        detail = text.split("Permission denied:", 1)[-1].split("\\n", 1)[0].split("\n", 1)[0].strip(' "')
        return PermissionError(f"{uri}: permission denied for HDFS user {hadoop_user()!r} ({detail})")
    if isinstance(exc, FileExistsError) or "FileAlreadyExistsException" in text:
        return FileExistsError(f"{uri}: already exists")
    if "ParentNotDirectoryException" in text or isinstance(exc, NotADirectoryError):
        return NotADirectoryError(f"{uri}: a parent is not a directory")
    if "All DataNodes failed" in text:  # followed by a dump of every replica's location
        return OSError(f"{uri}: no DataNode could serve this part of the file: every replica was unreachable or "
                       "failed its checksum")
    return exc


@contextmanager
def _errors(uri: str) -> Iterator[None]:
    try:
        yield
    except (OSError, RuntimeError) as exc:
        new = translate_error(exc, uri)
        if new is exc:
            raise
        raise new from exc


# ---- reachability --------------------------------------------------------------------------------------------


def namenode_addresses(scheme: str, authority: str, conf_dir: str | None = None) -> list[tuple[str, int]]:
    """host:port pairs to probe for an authority: itself, or an HA name service's RPC addresses."""
    if scheme == "viewfs" or not authority:
        return []  # viewfs mounts resolve inside hdfs-native; nothing single to probe
    if ":" in authority:
        host, port = authority.rsplit(":", 1)
        return [(host, int(port))]
    nns = hadoop_conf_value(f"dfs.ha.namenodes.{authority}", "hdfs-site.xml", conf_dir)
    if nns:
        out = []
        for nn in nns.split(","):
            addr = hadoop_conf_value(f"dfs.namenode.rpc-address.{authority}.{nn.strip()}", "hdfs-site.xml", conf_dir)
            if addr:
                host, port = addr.rsplit(":", 1)
                out.append((host, int(port)))
        return out
    return [(authority, DEFAULT_NN_PORT)]


def check_reachable(scheme: str, authority: str, timeout: float | None = None) -> None:
    """Raises NameNodeUnreachableError unless one NameNode accepts a TCP connection within `timeout` seconds."""
    if timeout is None:
        timeout = float(os.environ.get(CONNECT_TIMEOUT_ENV, DEFAULT_CONNECT_TIMEOUT))
    addrs = namenode_addresses(scheme, authority)
    if not addrs:
        return
    errors = []
    for host, port in addrs:
        try:
            with socket.create_connection((host, port), timeout=timeout):
                return
        except OSError as exc:
            errors.append(f"{host}:{port} ({exc})")
    raise NameNodeUnreachableError(
        f"NameNode of {scheme}://{authority} not reachable within {timeout:g}s: " + ", ".join(errors)
    )


@functools.lru_cache(maxsize=32)
def _client(scheme: str, authority: str, user: str, conf_dir: str | None) -> Any:
    """One hdfs-native client per (filesystem, user, configuration); clients are thread-safe and pool connections."""
    from hdfs_native import Client

    check_reachable(scheme, authority)
    config = {} if _client_setting(PACKET_SIZE_KEY, conf_dir) else {PACKET_SIZE_KEY: str(WRITE_PACKET_SIZE)}
    client = Client(f"{scheme}://{authority}", config=config, config_dir=conf_dir)
    _first_rpc(client, f"{scheme}://{authority}")
    return client


def _first_rpc(client: Any, fs_uri: str, timeout: float | None = None) -> None:
    """Something may accept TCP without being a NameNode (a proxy, a hung JVM); hdfs-native would then wait for
    a long time, so the first RPC runs in a daemon thread and is abandoned after `timeout` seconds."""
    if timeout is None:
        timeout = 2 * float(os.environ.get(CONNECT_TIMEOUT_ENV, DEFAULT_CONNECT_TIMEOUT))
    outcome: list[BaseException | None] = []

    def call() -> None:
        try:
            client.get_file_info("/")
            outcome.append(None)
        except BaseException as exc:  # noqa: BLE001 - reported to the caller below
            outcome.append(exc)

    thread = threading.Thread(target=call, name="tfoy-namenode-probe", daemon=True)
    thread.start()
    thread.join(timeout)
    if not outcome:
        raise NameNodeUnreachableError(f"NameNode of {fs_uri} accepted a connection but did not answer within "
                                       f"{timeout:g}s")
    if isinstance(outcome[0], (ConnectionError, TimeoutError)):
        raise NameNodeUnreachableError(f"NameNode of {fs_uri}: {outcome[0]}") from outcome[0]


def umask() -> int:
    """fs.permissions.umask-mode (octal; Hadoop's default 022), which Hadoop's clients take from 0666 for files and
    0777 for folders: tfoy creates what `hdfs dfs` would. A symbolic mode (u=rwx,g=rx,o=) counts as the default."""
    value = _client_setting("fs.permissions.umask-mode") or "022"
    try:
        return int(value, 8) & 0o777
    except ValueError:
        return 0o022


class HadoopConfigError(HdfsIoError, ValueError):
    """A client setting in HADOOP_CONF_DIR that Hadoop's own client would refuse too."""


_SIZE_SUFFIXES = "kmgtpe"


def _client_setting(key: str, conf_dir: str | None = None) -> str | None:
    """hdfs-site.xml's value, else core-site.xml's: Hadoop's Configuration lets the later file win."""
    return hadoop_conf_value(key, "hdfs-site.xml", conf_dir) or hadoop_conf_value(key, "core-site.xml", conf_dir)


def config_bytes(key: str) -> int | None:
    """A size as Hadoop's Configuration.getLongBytes reads it: bytes, or a whole number with a k, m, g, t, p or e
    suffix (binary, any case); None when unset."""
    value = _client_setting(key)
    if not value:
        return None
    digits, suffix = (value[:-1], value[-1].lower()) if not value[-1].isdigit() else (value, "")
    if digits.isdigit() and (not suffix or suffix in _SIZE_SUFFIXES):
        return int(digits) << (10 * (_SIZE_SUFFIXES.index(suffix) + 1) if suffix else 0)
    raise HadoopConfigError(f"{key} = {value!r} in the Hadoop configuration is not a size (bytes, or with "
                            f"k/m/g/t/p/e)")


def config_int(key: str) -> int | None:
    value = _client_setting(key)
    if not value:
        return None
    if not value.isdigit():
        raise HadoopConfigError(f"{key} = {value!r} in the Hadoop configuration is not a whole number")
    return int(value)


def write_options(overwrite: bool) -> Any:
    """As Hadoop's own clients create files: 0666 less the umask, and the client configuration's dfs.blocksize and
    dfs.replication when it sets them (hdfs-native on its own takes the NameNode's defaults; Java's client takes its
    own configuration, so an edge node's or a job's settings govern what it writes). The TF plugin does the same
    (native/hdfs_reader/src/fs.rs)."""
    from hdfs_native import WriteOptions

    return WriteOptions(overwrite=overwrite, create_parent=True, permission=0o666 & ~umask(),
                        block_size=config_bytes("dfs.blocksize"), replication=config_int("dfs.replication"))




class _BytesWriter(io.RawIOBase):
    """hdfs-native's FileWriter as io.BufferedWriter drives it. BufferedWriter hands large writes over as
    memoryviews, which hdfs-native's binding takes element by element (32 MiB: 0.63 s here, as bytes 0.03 s), so
    each becomes bytes first: one memcpy."""

    def __init__(self, inner: Any) -> None:
        super().__init__()
        self._inner = inner

    def writable(self) -> bool:
        return True

    def write(self, b: Any) -> int:
        return self._inner.write(b if isinstance(b, bytes) else bytes(b))

    def close(self) -> None:
        if not self.closed:
            try:
                self._inner.close()
            finally:
                super().close()


@dataclass(frozen=True)
class HdfsBackend:
    """One HDFS filesystem; its client is made (and checked reachable) on first use, per HDFS user and
    configuration, since both come from the environment at call time."""

    scheme: str
    authority: str

    @property
    def client(self) -> Any:
        return _client(self.scheme, self.authority, hadoop_user(), os.environ.get("HADOOP_CONF_DIR"))

    def uri(self, p: str) -> str:
        return f"{self.scheme}://{self.authority}{p}"

    def _info(self, st: Any) -> FileInfo:
        return FileInfo(uri=self.uri(st.path), size=st.length, is_dir=st.isdir, mtime=st.modification_time / 1000.0,
                        owner=st.owner, group=st.group, permission=st.permission)

    def stat(self, p: str) -> FileInfo:
        return self._info(self.client.get_file_info(p))

    def ls(self, p: str, recursive: bool) -> list[FileInfo]:
        return [self._info(st) for st in self.client.list_status(p, recursive)]

    def glob(self, p: str) -> list[str]:
        return [self.uri(st.path) for st in self.client.glob_status(p)]

    def _exists(self, p: str) -> bool:
        try:
            with _errors(self.uri(p)):
                self.client.get_file_info(p)
        except FileNotFoundError:
            return False
        return True

    def makedirs(self, p: str, exist_ok: bool) -> None:
        if not exist_ok and self._exists(p):
            raise FileExistsError(f"{self.uri(p)}: already exists")
        self.client.mkdirs(p, permission=0o777 & ~umask(), create_parent=True)

    def delete(self, p: str, recursive: bool) -> bool:
        return self._exists(p) and self.client.delete(p, recursive)

    def rename(self, src: str, dst: str, overwrite: bool) -> None:
        self.client.rename(src, dst, overwrite=overwrite)

    def open(self, p: str, mode: str, buffer_size: int) -> IO[bytes]:
        if mode == "r":
            return self.client.read(p)  # already reads large ranges; it has no readinto for BufferedReader
        inner = self.client.create(p, write_options(overwrite=True)) if mode == "w" else self.client.append(p)
        return io.BufferedWriter(_BytesWriter(inner), buffer_size)

    def errors(self, uri: str) -> Any:
        return _errors(uri)
