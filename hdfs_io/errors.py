"""The base of hdfs_io's own errors: `except HdfsIoError` catches what hdfs_io raises itself (a corrupt record, a
bad CSV line, an unreachable NameNode, a Kerberos login), while each keeps the built-in type callers already
catch (OSError, ValueError, ConnectionError, RuntimeError)."""

from __future__ import annotations


class HdfsIoError(Exception):
    """Base of hdfs_io's own errors."""


class PathError(HdfsIoError, ValueError):
    """A path tfoy cannot use, named with the reason: a scheme it does not serve (s3a://), `hdfs:///p` while the
    defaultFS is not HDFS, a local target that is a file or not writable. Bad input, found before anything is
    read or written (the CLI exits 2 on it)."""
