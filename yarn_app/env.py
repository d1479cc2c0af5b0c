"""The Python environment a job runs in: pack the submitting venv once, cache it, ship it as a public YARN archive.

Why our own packer and not venv-pack, pex or cluster-pack: all three ship site-packages only and expect the same
interpreter at the same path on every node (venv-pack's `bin/python` is a symlink to the base install, a pex needs
a compatible `python` on PATH, cluster-pack wraps both). Nodes must need nothing but a compatible libc and Java,
so the archive carries the base interpreter (binary, libpython, stdlib) with the venv's site-packages merged into
its own `lib/pythonX.Y/site-packages`. Unpacked anywhere, `bin/pythonX.Y` finds its prefix from its own location
(the `os.py` landmark), and `LD_LIBRARY_PATH=<env>/lib` overrides the build's RUNPATH for libpython.

Packing ~1.5 GB (TensorFlow) takes minutes on a small edge node, so archives are content-addressed: the key hashes
the Python version, the platform and the installed distributions (name==version, like `pip freeze`) minus the
exclusions. The archive is built once into a local cache, uploaded once to HDFS
(`/user/<user>/.tfoy/envs/<key>.tar.gz`, world-readable so YARN may localize it PUBLIC, i.e. cache it on each
NodeManager across applications), and reused by every later job with the same environment.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import logging
import os
import platform
import sys
import sysconfig
import tarfile
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path

from hdfs_io.paths import absolute_uri, hadoop_user, split_uri

log = logging.getLogger(__name__)

FORMAT_VERSION = "2"  # bump when the archive layout changes
DEFAULT_EXCLUDES = ("pyspark", "py4j")  # Spark mode runs on Spark's own executors, never in a YARN TF container
# Parts of the stdlib no training task imports; the static libpython alone is ~50 MB.
STDLIB_SKIP = {"test", "site-packages", "dist-packages", "idlelib", "tkinter", "turtledemo", "ensurepip", "lib2to3"}
# C/C++ headers (only for building custom ops) and pip: ~11k of the ~30k files. YARN unpacks and chmods a public
# archive file by file inside the NodeManager, so the file count is what the first localization costs.
SITE_SKIP_SUBPATHS = ("tensorflow/include", "pyarrow/include", "pip")
PROJECT_PACKAGES = ("yarn_app", "tfnode", "hdfs_io")
PROJECT_DISTRIBUTION = "tfoy"  # shipped as code next to the env, never inside it


@dataclass(frozen=True)
class EnvArchive:
    """Where a packed environment lives and how a container starts its Python."""

    key: str
    local_path: Path
    hdfs_uri: str
    size: int

    @property
    def python_relpath(self) -> str:
        """The interpreter inside the unpacked archive (relative to the archive's link name)."""
        return f"bin/python{sys.version_info.major}.{sys.version_info.minor}"


def cache_dir() -> Path:
    return Path(os.environ.get("TFOY_CACHE", Path.home() / ".cache" / "tfoy")) / "envs"


def hdfs_env_dir() -> str:
    return absolute_uri(f"/user/{hadoop_user()}/.tfoy/envs")


def _site_packages(prefix: str) -> Path:
    return Path(sysconfig.get_path("purelib", vars={"base": prefix, "platbase": prefix}))


def _excluded(name: str, excludes: tuple[str, ...]) -> bool:
    norm = name.lower().replace("-", "_")
    return norm == PROJECT_DISTRIBUTION or any(norm == e.lower().replace("-", "_") for e in excludes)


def env_key(excludes: tuple[str, ...] = DEFAULT_EXCLUDES) -> str:
    """Content hash of the running environment (interpreter + installed distributions), 16 hex digits."""
    dists = sorted(
        f"{d.metadata['Name']}=={d.version}"
        for d in importlib.metadata.distributions()
        if d.metadata["Name"] and not _excluded(d.metadata["Name"], excludes)
    )
    h = hashlib.sha256()
    for part in (FORMAT_VERSION, sys.version, platform.machine(), platform.libc_ver()[1], *sorted(excludes), *dists):
        h.update(part.encode() + b"\n")
    return h.hexdigest()[:16]


def _top_level_excludes(site: Path, excludes: tuple[str, ...]) -> set[str]:
    """Top-level names in site-packages that belong to excluded distributions (packages and dist-info)."""
    names: set[str] = set()
    for dist in importlib.metadata.distributions(path=[str(site)]):
        name = dist.metadata["Name"] or ""
        if not _excluded(name, excludes):
            continue
        for f in dist.files or ():
            top = Path(str(f)).parts[0]
            if top not in ("..", "bin"):
                names.add(top)
    names.update(p.name for p in site.glob("__editable__*"))
    return names


def pack(output: Path, excludes: tuple[str, ...] = DEFAULT_EXCLUDES, compresslevel: int = 1) -> Path:
    """Writes the relocatable archive of the running interpreter + venv to `output` (atomically)."""
    base = Path(sys.base_prefix)
    ver = f"python{sys.version_info.major}.{sys.version_info.minor}"
    site = _site_packages(sys.prefix)
    skip_site = _top_level_excludes(site, excludes)
    tmp = output.with_suffix(output.suffix + f".{os.getpid()}.tmp")
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
        if len(parts) > 3 and parts[3] in skip_site:
            return None
        rel = "/".join(parts[3:])
        if any(rel == p or rel.startswith(p + "/") for p in SITE_SKIP_SUBPATHS):
            return None
        return info

    with tarfile.open(tmp, "w:gz", compresslevel=compresslevel) as tar:
        binary = Path(os.path.realpath(base / "bin" / ver))
        tar.add(binary, arcname=f"bin/{ver}")
        for lib in sorted((base / "lib").glob("libpython*")):
            tar.add(lib, arcname=f"lib/{lib.name}")
        tar.add(base / "lib" / ver, arcname=f"lib/{ver}", filter=stdlib_filter)
        tar.add(site, arcname=f"lib/{ver}/site-packages", filter=site_filter)
    os.replace(tmp, output)
    log.info("packed %s (%.0f MB) in %.0f s", output, output.stat().st_size / 1e6, time.monotonic() - started)
    return output


def ensure_env_archive(excludes: tuple[str, ...] = DEFAULT_EXCLUDES, client=None) -> EnvArchive:
    """The cached archive of this environment on HDFS, packing and uploading it only when missing."""
    from hdfs_io.fs import hdfs_client

    key = env_key(excludes)
    local = cache_dir() / f"{key}.tar.gz"
    hdfs_dir = hdfs_env_dir()
    uri = f"{hdfs_dir}/{key}.tar.gz"
    client = client or hdfs_client(uri)
    _, _, path = split_uri(uri)
    try:
        info = client.get_file_info(path)
        log.info("env archive cached on HDFS: %s (%d MB)", uri, info.length // 1_000_000)
        return EnvArchive(key, local, uri, info.length)
    except FileNotFoundError:
        pass
    if not local.exists():
        log.info("packing the Python environment %s (first time for this environment: minutes)", sys.prefix)
        pack(local, excludes)
    _, _, dir_path = split_uri(hdfs_dir)
    client.mkdirs(dir_path, permission=0o755, create_parent=True)
    parent = dir_path
    while parent not in ("", "/"):
        if parent.endswith("/.tfoy") or parent.endswith("/.tfoy/envs"):
            client.set_permission(parent, 0o755)
        parent = os.path.dirname(parent)
    tmp = f"{path}.{os.getpid()}.uploading"
    started = time.monotonic()
    with open(local, "rb") as src, client.create(tmp) as dst:
        while chunk := src.read(8 << 20):
            dst.write(chunk)
    client.set_permission(tmp, 0o644)
    client.rename(tmp, path, overwrite=True)
    log.info("uploaded %s in %.0f s", uri, time.monotonic() - started)
    return EnvArchive(key, local, uri, local.stat().st_size)


def hdfs_path_is_public(client, path: str) -> bool:
    """True when YARN may localize `path` PUBLIC: o+r on the file, o+x on every ancestor folder."""
    info = client.get_file_info(path)
    if not info.permission & 0o004:
        return False
    parent = os.path.dirname(path)
    while parent and parent != "/":
        if not client.get_file_info(parent).permission & 0o001:
            return False
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
