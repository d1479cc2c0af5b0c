"""The base of hdfs_io's own errors: `except HdfsIoError` catches what hdfs_io raises itself (a corrupt record, a
bad CSV line, an unreachable NameNode, a Kerberos login), while each keeps the built-in type callers already
catch (OSError, ValueError, ConnectionError, RuntimeError)."""

from __future__ import annotations


class HdfsIoError(Exception):
    """Base of hdfs_io's own errors."""
