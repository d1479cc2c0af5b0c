"""The Python environment a job runs in, packed: the submitting venv as one relocatable archive, keyed by content.

Why our own packer and not venv-pack, pex or cluster-pack: all three ship site-packages only and expect the same
interpreter at the same path on every node (venv-pack's `bin/python` is a symlink to the base install, a pex needs
a compatible `python` on PATH, cluster-pack wraps both). Nodes must need nothing but a compatible libc and Java,
so the archive carries the base interpreter (binary, libpython, stdlib) with the venv's site-packages merged into
its own `lib/pythonX.Y/site-packages`. Unpacked anywhere, `bin/pythonX.Y` finds its prefix from its own location
(the `os.py` landmark), and `LD_LIBRARY_PATH=<env>/lib` overrides the build's RUNPATH for libpython.

Packing ~1.5 GB (TensorFlow) takes minutes on a small edge node, so archives are content-addressed: the key hashes
the Python version, the platform and what would be packed of site-packages, cheaply (see `env_key`: each
distribution's RECORD, sizes and mtimes where no RECORD vouches for the files). env_archive.py caches it on HDFS.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import logging
import os
import platform
import re
import sys
import sysconfig
import tarfile
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from hdfs_io import fs
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
PROJECT_DISTRIBUTION = "tfoy"  # shipped as code next to the env, never inside it


def cache_dir() -> Path:
    return Path(os.environ.get("TFOY_CACHE", Path.home() / ".cache" / "tfoy")) / "envs"


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
