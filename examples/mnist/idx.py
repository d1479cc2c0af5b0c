"""MNIST-format IDX files (gzip or raw), read with their header checked so a truncated or foreign file is named.

Format: big-endian magic (0x0000 0x08 ndim), ndim uint32 sizes, then uint8 data.
"""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np

DEFAULT_DIR = Path("/usr/share/datasets/fashion-mnist")
SPLITS = {"train": "train", "test": "t10k"}


class IdxError(ValueError):
    """An IDX file that is missing, truncated or not IDX; the message names the file."""


def read_idx(path: str | Path) -> np.ndarray:
    path = Path(path)
    if not path.exists():
        raise IdxError(f"{path}: no such IDX file")
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            data = f.read()
    except (OSError, EOFError) as exc:  # a truncated gzip stream
        raise IdxError(f"{path}: unreadable ({exc})") from exc
    if len(data) < 4 or data[0:2] != b"\0\0" or data[2] != 0x08:
        raise IdxError(f"{path}: not an unsigned-byte IDX file (magic {data[:4].hex() or 'missing'})")
    ndim = data[3]
    header = 4 + 4 * ndim
    if len(data) < header:
        raise IdxError(f"{path}: truncated header")
    shape = struct.unpack(f">{ndim}I", data[4:header])
    expected = int(np.prod(shape))
    if len(data) - header != expected:
        raise IdxError(f"{path}: truncated: header says {shape} = {expected} bytes, file has {len(data) - header}")
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(shape)


def load_split(split: str, idx_dir: str | Path = DEFAULT_DIR) -> tuple[np.ndarray, np.ndarray]:
    """(images [n, 784] uint8, labels [n] uint8) of 'train' or 'test' from an IDX folder."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {sorted(SPLITS)}, not {split!r}")
    idx_dir = Path(idx_dir)
    stem = SPLITS[split]

    def find(kind: str) -> Path:
        for name in (f"{stem}-{kind}-idx{3 if kind == 'images' else 1}-ubyte.gz",
                     f"{stem}-{kind}-idx{3 if kind == 'images' else 1}-ubyte"):
            if (idx_dir / name).exists():
                return idx_dir / name
        raise IdxError(f"{idx_dir / (stem + '-' + kind + '-idx*-ubyte.gz')}: no such IDX file")

    images = read_idx(find("images"))
    labels = read_idx(find("labels"))
    if images.ndim != 3 or labels.ndim != 1 or images.shape[0] != labels.shape[0]:
        raise IdxError(f"{idx_dir}: {split} images {images.shape} and labels {labels.shape} do not match")
    return images.reshape(images.shape[0], -1), labels
