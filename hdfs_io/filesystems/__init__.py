"""The two filesystems behind `hdfs_io.fs`: local files and HDFS (hdfs://, viewfs://), one small interface.

fs.py resolves a path once (`paths.absolute_uri`), picks the backend for its scheme and authority here, and keeps
everything the two share (URIs, sorting, text modes, trees, globs of plain paths). A backend takes the path part of
the URI and raises Python's own errors naming the URI: FileNotFoundError, PermissionError, FileExistsError,
NotADirectoryError. As fsspec's implementations do, each backend only says how its filesystem does one thing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import IO, Protocol

from hdfs_io.errors import PathError
from hdfs_io.paths import HADOOP_SCHEMES, LOCAL_SCHEMES, SERVED


@dataclass(frozen=True)
class FileInfo:
    """What callers need from a listing, for HDFS and local files alike."""

    uri: str
    size: int
    is_dir: bool
    mtime: float  # seconds since the epoch
    owner: str = ""
    group: str = ""
    permission: int = 0

    @property
    def name(self) -> str:
        return self.uri.rstrip("/").rsplit("/", 1)[-1]


class Backend(Protocol):
    """One filesystem (a scheme and an authority); `p` is always the path part of a URI on it."""

    def uri(self, p: str) -> str: ...

    def stat(self, p: str) -> FileInfo: ...

    def ls(self, p: str, recursive: bool) -> list[FileInfo]:
        """The entries below folder p (the file itself when p is a file), in any order."""
        ...

    def glob(self, p: str) -> list[str]:
        """URIs matching a pattern with wildcards, in any order."""
        ...

    def makedirs(self, p: str, exist_ok: bool) -> None: ...

    def delete(self, p: str, recursive: bool) -> bool:
        """False when p did not exist."""
        ...

    def rename(self, src: str, dst: str, overwrite: bool) -> None: ...

    def open(self, p: str, mode: str, buffer_size: int) -> IO[bytes]:
        """A binary stream; mode is r, w (create or truncate, with missing parent folders) or a."""
        ...

    def errors(self, uri: str):  # noqa: ANN201 - a context manager translating errors into ones naming uri
        ...


def backend_for(scheme: str, authority: str) -> Backend:
    if scheme in LOCAL_SCHEMES:
        from hdfs_io.filesystems.local import LOCAL

        return LOCAL
    if scheme in HADOOP_SCHEMES:
        from hdfs_io.filesystems.hdfs import HdfsBackend

        return HdfsBackend(scheme, authority)
    raise PathError(f"{scheme}://{authority}: {SERVED}")
