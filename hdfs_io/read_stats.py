"""What a reader reports back (ReadStats) and how it treats bad input (OnError).

Their own module because every part of a read updates the counters: the staging area (files staged), tf_bridge
(files streamed), TFRecord repair and CSV checking (what was skipped). The readers re-export both.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Literal

OnError = Literal["raise", "skip"]


@dataclass
class ReadStats:
    """Counters a caller can pass in to learn what a reader skipped (updated from tf.data's threads)."""

    files_staged: int = 0  # copied whole into the staging area first
    bytes_staged: int = 0
    files_streamed: int = 0  # read by TF straight from HDFS (tf_bridge)
    bytes_streamed: int = 0
    corrupt_records_skipped: int = 0
    bad_lines_skipped: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def add(self, **counts: int) -> None:
        with self._lock:
            for key, value in counts.items():
                setattr(self, key, getattr(self, key) + value)
