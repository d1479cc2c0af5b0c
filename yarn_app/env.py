"""The Python environment a job runs in: pack the submitting venv once, cache it, ship it as a YARN archive.

Why our own packer and not venv-pack, pex or cluster-pack: all three ship site-packages only and expect the same
interpreter at the same path on every node (venv-pack's `bin/python` is a symlink to the base install, a pex needs
a compatible `python` on PATH, cluster-pack wraps both). Nodes must need nothing but a compatible libc and Java,
so the archive carries the base interpreter (binary, libpython, stdlib) with the venv's site-packages merged into
its own `lib/pythonX.Y/site-packages`. Unpacked anywhere, `bin/pythonX.Y` finds its prefix from its own location
(the `os.py` landmark), and `LD_LIBRARY_PATH=<env>/lib` overrides the build's RUNPATH for libpython.

Packing ~1.5 GB (TensorFlow) takes minutes on a small edge node, so archives are content-addressed: the key hashes
the Python version, the platform and what would be packed of site-packages, cheaply (see `env_key`: each
distribution's RECORD, sizes and mtimes where no RECORD vouches for the files). The archive is built once into a
local cache, uploaded once to HDFS next to a marker `<key>.tar.gz.json` (size, sha256), and reused by every later
job with the same environment. Private by default: `/user/<user>/.tfoy/envs/<key>.tar.gz`, 0600 in a 0700 folder,
localized with APPLICATION visibility (once per application and node). `python_env.shared: true` puts it in
`/user/<user>/.tfoy/envs-shared/` world-readable (0644, folders 0755) so that YARN may localize it PUBLIC, i.e.
cache it on each NodeManager across applications, when every folder above it lets others through (else it is
still localized per application).

A published archive is never overwritten: YARN fails a container whose resource changed (timestamp) while it was
being localized, and other jobs may be localizing it at any time. Uploads go to a unique temporary name and are
published by a rename that refuses to replace an existing file; the marker is what makes a file with the right
name trusted, so a partial or foreign file is detected (by its size) and replaced instead of shipped.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import logging
import os
import platform
import re
import socket
import sys
import sysconfig
import tarfile
import time
import zipfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hdfs_io import fs
from hdfs_io.paths import absolute_uri, hadoop_user, split_uri
from hdfs_io.publish import publish

log = logging.getLogger(__name__)

FORMAT_VERSION = "2"  # bump when the archive layout changes
KEY_VERSION = "2"  # bump when what env_key hashes changes (2: content of the distributions, not only versions)
DEFAULT_EXCLUDES = ("pyspark", "py4j")  # Spark mode runs on Spark's own executors, never in a YARN TF container
# Parts of the stdlib no training task imports; the static libpython alone is ~50 MB.
STDLIB_SKIP = {"test", "site-packages", "dist-packages", "idlelib", "tkinter", "turtledemo", "ensurepip", "lib2to3"}
# C/C++ headers (only for building custom ops) and pip: ~11k of the ~30k files. YARN unpacks and chmods a public
# archive file by file inside the NodeManager, so the file count is what the first localization costs.
SITE_SKIP_SUBPATHS = ("tensorflow/include", "pyarrow/include", "pip")
PROJECT_PACKAGES = ("yarn_app", "tfnode", "hdfs_io")
PROJECT_DISTRIBUTION = "tfoy"  # shipped as code next to the env, never inside it
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


def cache_dir() -> Path:
    return Path(os.environ.get("TFOY_CACHE", Path.home() / ".cache" / "tfoy")) / "envs"


def hdfs_env_dir(shared: bool = False) -> str:
    """The folder of the cached env archives: private ones (only the owner may read them) or shared ones
    (world-readable, for PUBLIC localization). Its parent is the user's `.tfoy` folder."""
    return absolute_uri(f"/user/{hadoop_user()}/.tfoy/{'envs-shared' if shared else 'envs'}")


def _site_packages(prefix: str) -> Path:
    return Path(sysconfig.get_path("purelib", vars={"base": prefix, "platbase": prefix}))


def _excluded(name: str, excludes: tuple[str, ...]) -> bool:
    norm = name.lower().replace("-", "_")
    return norm == PROJECT_DISTRIBUTION or any(norm == e.lower().replace("-", "_") for e in excludes)


def _site_skipped(rel: str, skip_top: set[str]) -> bool:
    """Whether pack leaves out this path (relative to site-packages): env_key must hash exactly what is shipped."""
    return rel.split("/", 1)[0] in skip_top or any(rel == p or rel.startswith(p + "/") for p in SITE_SKIP_SUBPATHS)


# ---- the key ---------------------------------------------------------------------------------------------------


def env_key(excludes: tuple[str, ...] = DEFAULT_EXCLUDES) -> str:
    """Content hash of the running environment (interpreter + what would be packed of site-packages), 16 hex digits.

    name==version alone shipped stale code after a reinstall of a patched or locally built package with the same
    version. Hashing every file of a 1.5 GB venv costs seconds, so the key takes each distribution's RECORD (pip
    writes the sha256 of every installed file into it: a reinstall with other content changes it). Where RECORD
    does not vouch for the files on disk, the key takes their sizes and mtimes instead: distributions installed
    from a local directory, VCS or URL (`direct_url.json`: the ones people patch and reinstall in place),
    distributions without RECORD, and files in site-packages no distribution owns. A hand edit inside a regular
    (RECORD) distribution is not seen: reinstall it to ship it.
    """
    site = _site_packages(sys.prefix)
    h = hashlib.sha256()
    for part in (KEY_VERSION, FORMAT_VERSION, sys.version, platform.machine(), platform.libc_ver()[1],
                 *sorted(excludes), *_site_fingerprint(site, excludes)):
        h.update(part.encode() + b"\n")
    return h.hexdigest()[:16]


@dataclass(frozen=True)
class _Dist:
    name: str
    version: str
    record: str | None  # the RECORD file's text
    direct: bool  # installed from a local directory, VCS or URL (direct_url.json)
    files: tuple[str, ...] | None = None  # what the metadata lists when there is no RECORD (egg-info)


def _site_dists(site: Path) -> list[_Dist]:
    """The distributions installed in `site`, read once: parsing every METADATA with the email parser (what
    `dist.metadata` does) was most of env_key's time, and only two header lines are needed."""
    out = []
    for dist in importlib.metadata.distributions(path=[str(site)]):
        text = dist.read_text("METADATA") or dist.read_text("PKG-INFO") or ""
        head: dict[str, str] = {}
        for line in text.split("\n\n", 1)[0].splitlines():
            field_name, sep, value = line.partition(":")
            if sep and field_name in ("Name", "Version"):
                head.setdefault(field_name, value.strip())
        record = dist.read_text("RECORD")
        files = None if record is not None else tuple(str(f) for f in dist.files or ())
        out.append(_Dist(head.get("Name", ""), head.get("Version", ""), record,
                         dist.read_text("direct_url.json") is not None, files))
    return out


def _site_fingerprint(site: Path, excludes: tuple[str, ...]) -> list[str]:
    dists = _site_dists(site)
    skip_top = _top_level_excludes(site, excludes, dists)
    vouched: set[str] = set()  # top-level names whose every file a RECORD lists with its sha256
    by_stat: set[str] = set()  # top-level names fingerprinted by the sizes and mtimes of their files
    parts = []
    for dist in dists:
        if not dist.name or _excluded(dist.name, excludes):
            continue
        line = f"{dist.name}=={dist.version}"
        if dist.record is not None:
            line += " record:" + hashlib.sha256(dist.record.encode()).hexdigest()
            (by_stat if dist.direct else vouched).update(_record_tops(dist.record))
        parts.append(line)
    try:
        entries = set(os.listdir(site))
    except FileNotFoundError:
        entries = set()
    by_stat |= entries - vouched  # without RECORD (egg-info, copied in by hand): their files' sizes and mtimes
    parts.sort()
    parts += [f"{rel} {size} {mtime_ns}" for rel, size, mtime_ns in _stat_files(site, sorted(by_stat - skip_top),
                                                                                 skip_top)]
    return parts


def _record_tops(record: str) -> set[str]:
    """Top-level names in site-packages a RECORD lists files under (`..` entries are scripts in bin/: not packed).
    A regex rather than the csv module: TensorFlow's RECORD alone has 20k lines (a quoted path only loses its
    quote, and its top-level name is all that is used)."""
    return set(_RECORD_TOP.findall(record)) - {"..", ""}


_RECORD_TOP = re.compile(r'^"?([^/,\n"]*)', re.MULTILINE)


def _stat_files(site: Path, names: Iterable[str], skip_top: set[str]) -> Iterator[tuple[str, int, int]]:
    """(path relative to site, size, mtime_ns) of what pack would ship under these names, in a stable order.
    Bytecode is left out: Python writes it on import, and it follows from the sources anyway."""
    for name in names:
        top = site / name
        if top.is_symlink() or not top.is_dir():
            if top.exists() or top.is_symlink():
                st = top.lstat()
                yield name, st.st_size, st.st_mtime_ns
            continue
        for root, dirs, files in os.walk(top):
            rel_root = Path(root).relative_to(site).as_posix()
            dirs[:] = sorted(d for d in dirs if d != "__pycache__" and not _site_skipped(f"{rel_root}/{d}", skip_top))
            for f in sorted(files + [d for d in dirs if os.path.islink(os.path.join(root, d))]):
                rel = f"{rel_root}/{f}"
                if f.endswith(".pyc") or _site_skipped(rel, skip_top):
                    continue
                st = os.lstat(os.path.join(root, f))
                yield rel, st.st_size, st.st_mtime_ns


def _top_level_excludes(site: Path, excludes: tuple[str, ...], dists: list[_Dist] | None = None) -> set[str]:
    """Top-level names in site-packages that belong to excluded distributions (packages and dist-info)."""
    names: set[str] = set()
    for dist in _site_dists(site) if dists is None else dists:
        if not _excluded(dist.name, excludes):
            continue
        if dist.record is not None:
            names |= _record_tops(dist.record)
        else:
            names |= {Path(f).parts[0] for f in dist.files or () if Path(f).parts}
    names -= {"..", "bin"}
    names.update(p.name for p in site.glob("__editable__*"))
    return names


# ---- packing ---------------------------------------------------------------------------------------------------


def pack(output: Path, excludes: tuple[str, ...] = DEFAULT_EXCLUDES, compresslevel: int = 1) -> Path:
    """Writes the relocatable archive of the running interpreter + venv to `output` (atomically: a crash leaves no
    half archive under the name the cache trusts; the temporary name is unique to each writer)."""
    base = Path(sys.base_prefix)
    ver = f"python{sys.version_info.major}.{sys.version_info.minor}"
    site = _site_packages(sys.prefix)
    skip_site = _top_level_excludes(site, excludes)
    output.parent.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()

    def stdlib_filter(info: tarfile.TarInfo) -> tarfile.TarInfo | None:
        parts = Path(info.name).parts
        if len(parts) > 2 and parts[:2] == ("lib", ver) and parts[2] in STDLIB_SKIP:
            return None
        if len(parts) > 2 and parts[:2] == ("lib", ver) and parts[2].startswith("config-"):
            return None
        return info

    def site_filter(info: tarfile.TarInfo) -> tarfile.TarInfo | None:
        parts = Path(info.name).parts
        if len(parts) > 3 and _site_skipped("/".join(parts[3:]), skip_site):
            return None
        return info

    with (publish(output.resolve().as_uri(), replace=True) as p,
          tarfile.open(fs.local_path(p.tmp), "w:gz", compresslevel=compresslevel) as tar):
        binary = Path(os.path.realpath(base / "bin" / ver))
        tar.add(binary, arcname=f"bin/{ver}")
        for lib in sorted((base / "lib").glob("libpython*")):
            tar.add(lib, arcname=f"lib/{lib.name}")
        tar.add(base / "lib" / ver, arcname=f"lib/{ver}", filter=stdlib_filter)
        tar.add(site, arcname=f"lib/{ver}/site-packages", filter=site_filter)
    log.info("packed %s (%.0f MB) in %.0f s", output, output.stat().st_size / 1e6, time.monotonic() - started)
    return output


# ---- publishing on HDFS ----------------------------------------------------------------------------------------


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
    key = env_key(excludes)
    local = cache_dir() / f"{key}.tar.gz"
    uri = f"{hdfs_env_dir(shared)}/{key}.tar.gz"
    client = client or fs.hdfs_client(uri)

    def local_archive() -> Path:
        if not local.exists():
            log.info("packing the Python environment %s (first time for this environment: minutes)", sys.prefix)
            pack(local, excludes)
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


def build_code_zip(output: Path, root: Path | None = None) -> Path:
    """The project's own packages as a small zip (localized as an ARCHIVE folder on PYTHONPATH), with the native
    libraries ./build.sh setup built (hdfs_io's TF plugin and HDFS reader: same OS, Python and TF as the env)."""
    root = root or Path(__file__).resolve().parent.parent
    with zipfile.ZipFile(output, "w", zipfile.ZIP_DEFLATED) as zf:
        for pkg in PROJECT_PACKAGES:
            for pattern in ("*.py", "*.so", "*.cc", "*.rs", "*.patch", "Cargo.toml", "Cargo.lock"):
                for f in sorted((root / pkg).rglob(pattern)):
                    if "target" not in f.relative_to(root).parts:
                        zf.write(f, f.relative_to(root).as_posix())
    return output
