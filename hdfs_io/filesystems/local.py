"""file:// as a tfoy filesystem: the same calls as HDFS, so user code and tests run on a laptop unchanged.

It behaves as HDFS does where callers rely on it: writing creates missing parent folders, a rename without
overwrite refuses an existing target, and errors name the file:// URI.
"""

from __future__ import annotations

import builtins
import glob as globmod
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from typing import IO

from hdfs_io.filesystems import FileInfo


class LocalBackend:
    def uri(self, p: str) -> str:
        return "file://" + p

    def _info(self, p: str) -> FileInfo:
        st = os.stat(p)
        return FileInfo(uri=self.uri(p), size=st.st_size, is_dir=os.path.isdir(p), mtime=st.st_mtime,
                        permission=st.st_mode & 0o7777)

    def stat(self, p: str) -> FileInfo:
        return self._info(p)

    def ls(self, p: str, recursive: bool) -> list[FileInfo]:
        if not os.path.isdir(p):
            return [self._info(p)]
        if not recursive:
            return [self._info(os.path.join(p, n)) for n in os.listdir(p)]
        return [self._info(os.path.join(root, n)) for root, dirs, files in os.walk(p) for n in dirs + files]

    def glob(self, p: str) -> list[str]:
        return [self.uri(m) for m in globmod.glob(p, recursive=True)]

    def makedirs(self, p: str, exist_ok: bool) -> None:
        os.makedirs(p, exist_ok=exist_ok)

    def delete(self, p: str, recursive: bool) -> bool:
        if not os.path.lexists(p):
            return False
        if os.path.isdir(p) and not os.path.islink(p):
            if recursive:
                shutil.rmtree(p)
            else:
                os.rmdir(p)
        else:
            os.remove(p)
        return True

    def rename(self, src: str, dst: str, overwrite: bool) -> None:
        if not os.path.lexists(src):
            raise FileNotFoundError(f"{self.uri(src)}: no such file or directory")
        if os.path.lexists(dst) and not overwrite:
            raise FileExistsError(f"{self.uri(dst)}: already exists")
        os.replace(src, dst)

    def open(self, p: str, mode: str, buffer_size: int) -> IO[bytes]:
        if mode != "r":  # as on HDFS, writing creates missing parent folders
            os.makedirs(os.path.dirname(p) or "/", exist_ok=True)
        return builtins.open(p, mode + "b")  # noqa: SIM115 - the caller closes it

    @contextmanager
    def errors(self, uri: str) -> Iterator[None]:
        try:
            yield
        except OSError as exc:
            if exc.errno is None:  # raised here, naming its URI already
                raise
            if isinstance(exc, FileNotFoundError):
                raise FileNotFoundError(f"{uri}: no such file or directory") from None
            if isinstance(exc, FileExistsError):
                raise FileExistsError(f"{uri}: already exists") from None
            if isinstance(exc, PermissionError):
                raise PermissionError(f"{uri}: permission denied ({exc})") from exc
            raise


LOCAL = LocalBackend()  # stateless: one is enough
