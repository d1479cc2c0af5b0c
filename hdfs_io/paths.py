"""URI rules shared by every tfoy component, as Hadoop users expect them.

`hdfs://nn:port/p` and `viewfs://ns/p` are kept; `hdfs:///p` and absolute `/p` go to the defaultFS;
a relative path goes to the user's home `/user/<user>/p` on the defaultFS (as `hdfs dfs` and TFoS's `hdfs_path`
do); `file://` stays local. The defaultFS comes from HADOOP_CONF_DIR's core-site.xml unless given.
"""

from __future__ import annotations

import functools
import getpass
import os
import xml.etree.ElementTree as ET
from pathlib import Path
from urllib.parse import urlsplit

from hdfs_io.errors import PathError

LOCAL_SCHEMES = ("file",)
HADOOP_SCHEMES = ("hdfs", "viewfs")
SERVED = "tfoy reads and writes file://, hdfs:// and viewfs:// only"


def hadoop_conf_value(key: str, site: str = "core-site.xml", conf_dir: str | None = None) -> str | None:
    """A property from a Hadoop site file in HADOOP_CONF_DIR (None when unset or absent)."""
    conf_dir = conf_dir or os.environ.get("HADOOP_CONF_DIR")
    if not conf_dir:
        return None
    path = Path(conf_dir) / site
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    return _site_properties(str(path), st.st_mtime_ns, st.st_size).get(key)


@functools.lru_cache(maxsize=16)
def _site_properties(path: str, mtime_ns: int, size: int) -> dict[str, str]:
    """A site file's properties, parsed once per version of it (every file hdfs_io creates asks for a few)."""
    props: dict[str, str] = {}
    for prop in ET.parse(path).getroot().iter("property"):
        name = prop.findtext("name")
        if name is not None:
            props.setdefault(name.strip(), (prop.findtext("value") or "").strip())
    return props


def default_fs(conf_dir: str | None = None) -> str:
    """fs.defaultFS without a trailing slash, or 'file://' when no Hadoop configuration is found."""
    value = hadoop_conf_value("fs.defaultFS", conf_dir=conf_dir) or "file://"
    return value if value.endswith("://") else value.rstrip("/")


def hadoop_user() -> str:
    """The user HDFS sees. Simple auth: HADOOP_USER_NAME, else the login name. Kerberos: in a YARN container the
    application's user (YARN sets USER); elsewhere the short name of the ticket cache's principal."""
    from hdfs_io import kerberos

    if not kerberos.enabled():
        return os.environ.get("HADOOP_USER_NAME") or getpass.getuser()
    if kerberos.in_container():
        return os.environ.get("USER") or getpass.getuser()
    return kerberos.short_name(_cached_principal(os.environ.get("KRB5CCNAME", "")) or getpass.getuser())


@functools.lru_cache(maxsize=8)
def _cached_principal(ccache: str) -> str | None:
    """klist per ticket cache, once (hadoop_user is asked for every relative path)."""
    from hdfs_io import kerberos

    return kerberos.cached_principal()


def absolute_uri(path: str, default_fs_uri: str | None = None, user: str | None = None) -> str:
    """A fully qualified URI for `path` (see the module doc for the rules)."""
    if not path:
        raise PathError("empty path")
    fs = (default_fs_uri if default_fs_uri is not None else default_fs()).rstrip("/")
    parts = urlsplit(path)
    if parts.scheme in LOCAL_SCHEMES:
        return path
    if parts.scheme in HADOOP_SCHEMES:
        if parts.netloc:
            return path
        # hdfs:///p: the defaultFS's authority (only meaningful when the defaultFS has the same scheme)
        fs_parts = urlsplit(fs)
        if fs_parts.scheme != parts.scheme:
            raise PathError(f"{path}: no authority, and the defaultFS {fs!r} is not {parts.scheme}://")
        return f"{fs}{parts.path or '/'}"
    if parts.scheme:
        return path  # another filesystem (gs://, s3a://): left to whoever reads it
    if fs.startswith("file:"):
        return "file://" + os.path.abspath(path)
    if path.startswith("/"):
        return fs + path
    return f"{fs}/user/{user or hadoop_user()}/{path}"


def served_uri(path: str) -> str:
    """absolute_uri, refusing a filesystem tfoy has no client for (s3a://, gs://) up front, rather than at the first
    read or write of a job that has already started."""
    uri = absolute_uri(path)
    scheme = urlsplit(uri).scheme
    if scheme not in LOCAL_SCHEMES + HADOOP_SCHEMES:
        raise PathError(f"{uri}: {SERVED}")
    return uri


def split_uri(uri: str) -> tuple[str, str, str]:
    """(scheme, authority, path) of a qualified URI; a bare path counts as file://."""
    parts = urlsplit(uri)
    return parts.scheme or "file", parts.netloc, parts.path or "/"
