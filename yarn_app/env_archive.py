"""The packed environment cached on HDFS, shipped to containers as a YARN archive, uploaded once per content key.

The archive is built once into a local cache (python_env.py), uploaded once to HDFS next to a marker
`<key>.tar.gz.json` (size, sha256), and reused by every later job with the same environment. Private by default:
`/user/<user>/.tfoy/envs/<key>.tar.gz`, 0600 in a 0700 folder, localized with APPLICATION visibility (once per
application and node). `python_env.shared: true` puts it in `/user/<user>/.tfoy/envs-shared/` world-readable
(0644, folders 0755) so that YARN may localize it PUBLIC, i.e. cache it on each NodeManager across applications,
when every folder above it lets others through (else it is still localized per application).

A published archive is never overwritten: YARN fails a container whose resource changed (timestamp) while it was
being localized, and other jobs may be localizing it at any time. Uploads go to a unique temporary name and are
published by a rename that refuses to replace an existing file; the marker is what makes a file with the right
name trusted, so a partial or foreign file is detected (by its size) and replaced instead of shipped.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import socket
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hdfs_io import fs
from hdfs_io.paths import absolute_uri, hadoop_user, split_uri
from hdfs_io.publish import publish
from yarn_app import python_env
from yarn_app.python_env import DEFAULT_EXCLUDES

log = logging.getLogger(__name__)

MARKER_SUFFIX = ".json"  # <key>.tar.gz.json next to the archive: what a complete upload wrote
# A publisher writes the marker right after its rename succeeded (one small file): a reader that finds the archive
# without its marker waits this long before calling it foreign.
MARKER_WAIT_S = 10.0
PUBLISH_ATTEMPTS = 3
UPLOAD_CHUNK = 8 << 20


@dataclass(frozen=True)
class _Modes:
    """HDFS permissions of an env folder and of the files in it (archive, temporary uploads, marker)."""

    folder: int
    file: int


PRIVATE_MODES = _Modes(folder=0o700, file=0o600)  # only the owner: localized APPLICATION
SHARED_MODES = _Modes(folder=0o755, file=0o644)  # world-readable by choice: may be localized PUBLIC
TFOY_DIR_MODE = 0o755  # `.tfoy` itself: other tfoy folders (runs) live under it


@dataclass(frozen=True)
class EnvArchive:
    """Where a packed environment lives and how a container starts its Python."""

    key: str
    local_path: Path
    hdfs_uri: str
    size: int
    public: bool = True  # every NodeManager may read it (PUBLIC visibility), see hdfs_path_is_public

    @property
    def python_relpath(self) -> str:
        """The interpreter inside the unpacked archive (relative to the archive's link name)."""
        return f"bin/python{sys.version_info.major}.{sys.version_info.minor}"


def hdfs_env_dir(shared: bool = False) -> str:
    """The folder of the cached env archives: private ones (only the owner may read them) or shared ones
    (world-readable, for PUBLIC localization). Its parent is the user's `.tfoy` folder."""
    return absolute_uri(f"/user/{hadoop_user()}/.tfoy/{'envs-shared' if shared else 'envs'}")


@dataclass(frozen=True)
class _Verdict:
    """What a cached archive on HDFS is worth: ok, missing (info None) or bad (reason says why)."""

    ok: bool
    info: fs.FileInfo | None = None
    reason: str = ""


def ensure_env_archive(excludes: tuple[str, ...] = DEFAULT_EXCLUDES, client: Any = None,
                       shared: bool = False) -> EnvArchive:
    """The cached archive of this environment on HDFS, packing and uploading it only when missing or unusable.

    `client`: the raw hdfs-native client of the archive's filesystem (fs.hdfs_client by default), for what the fs
    facade does not do (permissions). `shared`: world-readable in `.tfoy/envs-shared` (may be localized PUBLIC);
    else private to its owner in `.tfoy/envs` (0600 in a 0700 folder: localized APPLICATION)."""
    key = python_env.env_key(excludes)
    local = python_env.cache_dir() / f"{key}.tar.gz"
    uri = f"{hdfs_env_dir(shared)}/{key}.tar.gz"
    client = client or fs.hdfs_client(uri)

    def local_archive() -> Path:
        if not local.exists():
            log.info("packing the Python environment %s (first time for this environment: minutes)", sys.prefix)
            python_env.pack(local, excludes)
        return local

    size = _ensure_published(uri, local_archive, client, SHARED_MODES if shared else PRIVATE_MODES)
    public = hdfs_path_is_public(client, split_uri(uri)[2])
    if not public and not shared:
        log.info("%s is private (python_env.shared: false): YARN localizes it with APPLICATION visibility (once per "
                 "application and node, not cached across jobs)", uri)
    elif not public:
        log.info("%s is not readable by everyone (o+r on it, o+x on every folder above it): YARN localizes it with "
                 "APPLICATION visibility (once per application and node, not cached across jobs)", uri)
    return EnvArchive(key, local, uri, size, public)


def marker_uri(uri: str) -> str:
    return uri + MARKER_SUFFIX


def _ensure_published(uri: str, local_archive: Callable[[], Path], client: Any, modes: _Modes) -> int:
    """Size of the verified archive at `uri`, uploaded from local_archive() unless a usable one is there.

    Never replaces a usable published archive (a job may be localizing it); a bad one is deleted first, and ours is
    published by a rename that fails if another submitter published meanwhile: then theirs is kept. The folder, and
    a reused archive and its marker, get `modes` first (a private folder an older tfoy made 0755 is tightened)."""
    _prepare_env_dir(client, uri.rsplit("/", 1)[0], modes.folder)
    verdict = _verify(uri)
    if verdict.ok:
        assert verdict.info is not None
        _set_file_modes(client, uri, modes.file)
        log.info("env archive cached on HDFS: %s (%d MB)", uri, verdict.info.size // 1_000_000)
        return verdict.info.size
    if verdict.info is not None:
        _discard(uri, verdict)
    local = local_archive()
    started = time.monotonic()
    # a name unique to this upload: two first submits of one environment at once each write their own file
    pending = publish(uri, tag="uploading")
    try:
        digest, size = _upload(local, pending.tmp, client, modes.file)
        for _ in range(PUBLISH_ATTEMPTS):
            try:
                pending.commit()  # no overwrite: fails if another submitter published meanwhile
            except FileExistsError:
                verdict = _verify(uri)
                if verdict.ok:
                    assert verdict.info is not None
                    _set_file_modes(client, uri, modes.file)
                    log.info("env archive %s was published meanwhile by another submitter: keeping it (jobs may be "
                             "localizing it) and deleting this upload %s", uri, pending.tmp)
                    return verdict.info.size
                if verdict.info is not None:
                    _discard(uri, verdict)
                continue
            _write_marker(uri, digest, size, client, modes.file)
            log.info("uploaded %s (%d MB) in %.0f s", uri, size // 1_000_000, time.monotonic() - started)
            return size
    finally:
        pending.abort()  # nothing to do once published
    raise RuntimeError(f"{uri}: could not publish the env archive in {PUBLISH_ATTEMPTS} attempts (files with this "
                       "name kept appearing without a matching marker)")


def _verify(uri: str, wait: float | None = None) -> _Verdict:
    """Cheap check (a stat and the read of a tiny file, never the archive) that `uri` is an archive a tfoy upload
    completed: its marker exists and records its size. Existence alone trusted a truncated copy or a foreign file
    with the right name. A missing marker is waited for a little: its publisher writes it right after the rename."""
    wait = MARKER_WAIT_S if wait is None else wait
    marker = marker_uri(uri)
    deadline = time.monotonic() + wait
    while True:
        try:
            info = fs.stat(uri)
        except FileNotFoundError:
            return _Verdict(False)
        try:
            recorded = json.loads(fs.read_bytes(marker))
        except FileNotFoundError:
            if time.monotonic() >= deadline:
                return _Verdict(False, info, f"no marker {marker}: not an archive a tfoy upload completed")
            time.sleep(min(0.5, wait))
            continue
        except ValueError:
            return _Verdict(False, info, f"its marker {marker} is not JSON")
        if not isinstance(recorded, dict) or recorded.get("size") != info.size:
            expected = recorded.get("size") if isinstance(recorded, dict) else None
            return _Verdict(False, info, f"{info.size} bytes where its marker {marker} records {expected}")
        return _Verdict(True, info)


def _discard(uri: str, verdict: _Verdict) -> None:
    """Deletes the bad archive the verdict is about, unless it was replaced since (then it is someone's fresh one)."""
    assert verdict.info is not None
    try:
        now = fs.stat(uri)
    except FileNotFoundError:
        return
    if (now.size, now.mtime) != (verdict.info.size, verdict.info.mtime):
        return
    log.warning("env archive %s is not usable (%s): replacing it", uri, verdict.reason)
    fs.delete(uri)
    fs.delete(marker_uri(uri))


def _prepare_env_dir(client: Any, dir_uri: str, folder_mode: int) -> None:
    """Creates the archive folder with `folder_mode`, or sets it on an existing one whose mode differs (0700: only
    the owner; 0755: o+x so that a shared archive can be PUBLIC, hdfs_path_is_public decides whether it is: the
    user's home may still be private). The `.tfoy` folder above it stays 0755: other tfoy folders live there."""
    _, _, dir_path = split_uri(dir_uri)
    parent = os.path.dirname(dir_path)
    if os.path.basename(parent) == ".tfoy":
        _ensure_dir(client, parent, TFOY_DIR_MODE)  # first, so that its parents are made as before (0755)
    _ensure_dir(client, dir_path, folder_mode)


def _ensure_dir(client: Any, path: str, mode: int) -> None:
    try:
        current = client.get_file_info(path).permission & 0o7777
    except FileNotFoundError:
        client.mkdirs(path, permission=mode, create_parent=True)
        current = None  # mkdirs applies the umask (and gives implicit parents u+wx): set the mode itself
    if current != mode:
        if current is not None:
            log.info("%s: permission %o -> %o", path, current, mode)
        client.set_permission(path, mode)


def _set_file_modes(client: Any, uri: str, file_mode: int) -> None:
    """Gives a reused archive and its marker `file_mode` where they have another one (0644 files an older tfoy
    left in what is now a private folder become 0600). A permission change leaves the modification time, which
    YARN checks while localizing, as it is."""
    for path in (split_uri(uri)[2], split_uri(marker_uri(uri))[2]):
        try:
            current = client.get_file_info(path).permission & 0o7777
        except FileNotFoundError:
            continue
        if current != file_mode:
            log.info("%s: permission %o -> %o", path, current, file_mode)
            client.set_permission(path, file_mode)


def _upload(local: Path, tmp: str, client: Any, file_mode: int) -> tuple[str, int]:
    """Copies `local` to `tmp` with `file_mode`; returns (sha256, size)."""
    h = hashlib.sha256()
    size = 0
    with open(local, "rb") as src, fs.open(tmp, "wb") as dst:
        while chunk := src.read(UPLOAD_CHUNK):
            h.update(chunk)
            dst.write(chunk)
            size += len(chunk)
    client.set_permission(split_uri(tmp)[2], file_mode)
    return h.hexdigest(), size


def _write_marker(uri: str, digest: str, size: int, client: Any, file_mode: int) -> None:
    """Writes the marker (with `file_mode`) whole under a temporary name first: a reader must never see half of
    one."""
    body = {"size": size, "sha256": digest, "archive": uri.rsplit("/", 1)[1],
            "uploaded_by": f"{hadoop_user()}@{socket.gethostname()}", "uploaded_at": time.time()}
    with publish(marker_uri(uri), replace=True) as p:
        fs.write_bytes(p.tmp, json.dumps(body).encode())
        client.set_permission(split_uri(p.tmp)[2], file_mode)


def hdfs_path_is_public(client: Any, path: str) -> bool:
    """True when YARN may localize `path` PUBLIC: o+r on the file, o+x on every ancestor folder up to and including
    `/` (what the NodeManager's FSDownload.isPublic checks; it fails the container otherwise)."""
    info = client.get_file_info(path)
    if not info.permission & 0o004:
        return False
    parent = os.path.dirname(path.rstrip("/"))
    while parent:
        if not client.get_file_info(parent).permission & 0o001:
            return False
        if parent == "/":
            break
        parent = os.path.dirname(parent)
    return True
