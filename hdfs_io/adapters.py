"""fsspec and pyarrow views of the same URIs, so pyarrow CSV/Parquet (and pandas, through fsspec) read HDFS.

Both reuse existing implementations: hdfs-native's fsspec filesystem for hdfs:// and viewfs://, fsspec's local
filesystem for file://, and pyarrow's PyFileSystem(FSSpecHandler) on top; nothing here re-implements I/O.
"""

from __future__ import annotations

from typing import Any

from hdfs_io import fs as _fs
from hdfs_io.paths import absolute_uri, split_uri


def fsspec_filesystem(path: str) -> tuple[Any, str]:
    """(fsspec filesystem, path inside it) for any tfoy path; the NameNode is checked reachable first."""
    import fsspec

    uri = absolute_uri(path)
    scheme, authority, p = split_uri(uri)
    if scheme == "file":
        return fsspec.filesystem("file"), p
    _fs.hdfs_client(uri)  # bounded reachability check before hdfs-native's own (long) retries
    from hdfs_native.fsspec import HdfsFileSystem, ViewfsFileSystem

    cls = HdfsFileSystem if scheme == "hdfs" else ViewfsFileSystem
    host, _, port = authority.partition(":")
    return cls(host=host or None, port=int(port) if port else None), p


def pyarrow_filesystem(path: str) -> tuple[Any, str]:
    """(pyarrow.fs.FileSystem, path inside it), like pyarrow.fs.FileSystem.from_uri but without libhdfs."""
    from pyarrow.fs import FSSpecHandler, LocalFileSystem, PyFileSystem

    uri = absolute_uri(path)
    scheme, _, p = split_uri(uri)
    if scheme == "file":
        return LocalFileSystem(), p
    fsspec_fs, p = fsspec_filesystem(uri)
    return PyFileSystem(FSSpecHandler(fsspec_fs)), p
