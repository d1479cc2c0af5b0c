"""Which files a reader reads: paths, globs and folders expanded to file URIs, and this worker's share of them.

Sharding is by file: every worker expands the same sorted list, shuffles it with the same seed and takes every
num_shards-th file, so the workers agree on who reads what without talking to each other. As with Hadoop's
FileInputFormat, what a glob or a folder brings in leaves out hidden names (`_SUCCESS`, `.part-0.crc`, writers'
temporaries), which would otherwise be read as corrupt records.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Sequence
from typing import Any

from hdfs_io import fs
from hdfs_io.paths import absolute_uri

log = logging.getLogger("hdfs_io.datasets")  # the readers' logger: one name to configure, as before the split

HIDDEN_PREFIXES = ("_", ".")  # Hadoop FileInputFormat's hiddenFileFilter: _SUCCESS, _temporary, .crc, .x.tmp


def _is_glob(path: str) -> bool:
    return any(c in path for c in "*?[")


def _hidden_below_glob(pattern: str, uri: str) -> bool:
    """True when a name the glob matched (from its first wildcard component on) is hidden, as Hadoop's input
    formats judge: job markers (`_SUCCESS`, `_logs`, and what sits in `_temporary/`), checksum files
    (`.part-0.crc`) and writers' temporaries (`.name.tfoy-tmp-…`), none of which hold records."""
    parts = absolute_uri(pattern).rstrip("/").split("/")
    fixed = next((i for i, part in enumerate(parts) if _is_glob(part)), len(parts))
    return any(name.startswith(HIDDEN_PREFIXES) for name in uri.rstrip("/").split("/")[fixed:])


def expand_paths(paths_or_globs: str | Sequence[str]) -> list[str]:
    """Sorted file URIs for paths, globs or folders. As with Hadoop's FileInputFormat, what a glob or a folder
    brings in leaves out hidden names (`_`/`.` prefixed: `_SUCCESS`, `.x.crc`, temporaries being written), which
    would otherwise be read as corrupt records; a file named explicitly is read whatever its name, since the
    caller asked for it. Raises FileNotFoundError naming the first path or glob that yields no file."""
    items = [paths_or_globs] if isinstance(paths_or_globs, str) else list(paths_or_globs)
    if not items:
        raise FileNotFoundError("no input paths given")
    out: list[str] = []
    for item in items:
        matches = fs.glob(item)
        if not matches:
            raise FileNotFoundError(f"{absolute_uri(item)}: no such file, or the glob matches nothing")
        if _is_glob(item):
            visible = [uri for uri in matches if not _hidden_below_glob(item, uri)]
            if not visible:
                raise FileNotFoundError(
                    f"{absolute_uri(item)}: the glob matches only hidden files ({', '.join(matches[:3])}"
                    f"{', …' if len(matches) > 3 else ''}), which are not read")
            matches = visible
        for uri in matches:
            if fs.isdir(uri):
                out += [f.uri for f in fs.ls(uri) if not f.is_dir and not f.name.startswith(HIDDEN_PREFIXES)]
            else:
                out.append(uri)
    if not out:
        raise FileNotFoundError(f"{items}: only empty folders (or folders of hidden files)")
    return sorted(dict.fromkeys(out))


def shard_files(
    files: Sequence[str], num_shards: int = 1, shard_index: int = 0, shuffle: bool = False, seed: int | None = None
) -> list[str]:
    """This worker's files: the (seeded, so identical on every worker) shuffled list, every num_shards-th."""
    if not 0 <= shard_index < num_shards:
        raise ValueError(f"shard_index {shard_index} not in [0, {num_shards})")
    files = sorted(files)
    if shuffle:
        random.Random(seed).shuffle(files)
    mine = files[shard_index::num_shards]
    if not mine:
        raise ValueError(
            f"{len(files)} files cannot be sharded by file over {num_shards} workers: worker {shard_index} gets none"
        )
    return mine


def shard_args(ctx: Any, num_shards: int | None, shard_index: int | None) -> tuple[int, int]:
    """(num_shards, shard_index): as given, else the tfnode NodeContext's, else one shard."""
    if ctx is not None:
        return (num_shards or ctx.num_shards), (shard_index if shard_index is not None else ctx.shard_index)
    return num_shards or 1, shard_index or 0


def worker_files(
    paths_or_globs: str | Sequence[str],
    ctx: Any,
    num_shards: int | None,
    shard_index: int | None,
    shuffle: bool,
    seed: int | None,
) -> list[str]:
    """This worker's files (sorted, or in the seeded shuffled order every worker agrees on)."""
    n, i = shard_args(ctx, num_shards, shard_index)
    files = shard_files(expand_paths(paths_or_globs), n, i, shuffle, seed)
    log.info("reading %d files (shard %d of %d)", len(files), i, n)
    return files
