"""Skipping corrupt TFRecords reads the staged file a bounded number of times, however many records are bad.

Local files (file://), which tfrecord_dataset(on_corrupt="skip") stages like HDFS files. Reads are counted at
every way the readers can go over a staged file: Python opens in staging, record_repair and csv_check (the header
scan's mmap, rewrites), TF's batched reader and TF's random-access reader.
"""

from __future__ import annotations

import struct
from collections import Counter
from pathlib import Path

import pytest
import tensorflow as tf
from tensorflow.python.lib.io import tf_record

from hdfs_io import csv_check, datasets, record_repair, staging
from hdfs_io.records import HEADER

RECORDS = 200


def _write(path: Path) -> list[int]:
    """RECORDS records of equal length holding their index; returns each record's byte offset."""
    with tf.io.TFRecordWriter(str(path)) as w:
        for i in range(RECORDS):
            w.write(struct.pack("<I", i) * 8)
    size = HEADER + 32 + 4
    assert path.stat().st_size == RECORDS * size
    return [i * size for i in range(RECORDS)]


def _damage_data(path: Path, offsets: list[int], bad: list[int]) -> None:
    data = bytearray(path.read_bytes())
    for i in bad:
        data[offsets[i] + HEADER + 5] ^= 0xFF  # in the payload: only the data CRC tells
    path.write_bytes(bytes(data))


class ReadCounter:
    """Counts the reads of files under one folder (the dataset's staging area)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, area: Path):
        self.area = str(area)
        self.reads: Counter[str] = Counter()
        real_dataset, real_reader, real_open = tf.data.TFRecordDataset, tf_record.tf_record_random_reader, open

        def staged(path: object) -> bool:
            return isinstance(path, (str, bytes)) and (path.decode() if isinstance(path, bytes) else path).startswith(
                self.area)

        def dataset(filenames: object, *args: object, **kwargs: object) -> object:
            if staged(filenames):  # the dataset's own reader gets a tensor: only checking passes are counted
                self.reads["tf batched reader"] += 1
            return real_dataset(filenames, *args, **kwargs)

        def reader(path: str) -> object:
            if staged(path):
                self.reads["tf random-access reader"] += 1
            return real_reader(path)

        def python_open(path: object, mode: str = "r", *args: object, **kwargs: object) -> object:
            if staged(path) and "r" in mode:
                self.reads[f"python open({mode!r})"] += 1
            return real_open(path, mode, *args, **kwargs)

        monkeypatch.setattr(tf.data, "TFRecordDataset", dataset)
        monkeypatch.setattr(tf_record, "tf_record_random_reader", reader)
        for module in (record_repair, staging, csv_check):  # where staged files are opened in Python
            monkeypatch.setattr(module, "open", python_open, raising=False)  # found before the builtin

    @property
    def total(self) -> int:
        return sum(self.reads.values())


def _skip_read(path: Path, area: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[list[int], datasets.ReadStats, int]:
    area.mkdir()
    with monkeypatch.context() as m:
        counter = ReadCounter(m, area)
        stats = datasets.ReadStats()
        ds = datasets.tfrecord_dataset(f"file://{path}", on_corrupt="skip", stats=stats, stage_dir=str(area))
        ids = [struct.unpack_from("<I", r)[0] for r in ds.as_numpy_iterator()]
    return ids, stats, counter.total


@pytest.mark.parametrize("tail", ["whole", "truncated"])
def test_skipping_many_bad_records_reads_the_file_a_bounded_number_of_times(tmp_path, monkeypatch, tail):
    totals = {}
    for nbad in (1, 5, 60):
        path = tmp_path / f"bad{nbad}.tfrecord"
        offsets = _write(path)
        bad = list(range(3, 3 + 3 * nbad, 3))  # every third record from the 4th
        _damage_data(path, offsets, bad)
        lost_tail: list[int] = []
        if tail == "truncated":  # the file ends inside its last-but-one record: that and the last are lost
            path.write_bytes(path.read_bytes()[: offsets[RECORDS - 2] + 20])
            lost_tail = [RECORDS - 2, RECORDS - 1]
        ids, stats, totals[nbad] = _skip_read(path, tmp_path / f"stage{nbad}", monkeypatch)
        assert ids == [i for i in range(RECORDS) if i not in bad and i not in lost_tail], nbad
        assert stats.corrupt_records_skipped == nbad + bool(lost_tail) and stats.files_staged == 1
    assert totals[1] == totals[5] == totals[60], totals  # per file, not per bad record
    assert totals[60] <= 6, totals


def test_a_good_file_is_checked_in_one_tf_pass(tmp_path, monkeypatch):
    path = tmp_path / "good.tfrecord"
    _write(path)
    area = tmp_path / "stage"
    area.mkdir()
    with monkeypatch.context() as m:
        counter = ReadCounter(m, area)
        ds = datasets.tfrecord_dataset(f"file://{path}", on_corrupt="skip", stage_dir=str(area))
        assert len(list(ds.as_numpy_iterator())) == RECORDS
    assert counter.reads["tf batched reader"] == 1 and counter.reads["tf random-access reader"] == 0, counter.reads


def test_staged_passes_leave_no_open_descriptor(tmp_path):
    """The defect: every staged file kept mkstemp's descriptor open, one per file per pass (a deleted file in
    /dev/shm each, its memory never freed): a repeated dataset over 2 files went from 6 to 106 descriptors in 50
    passes, and a long run ended in "Too many open files"."""
    import os

    for name in ("a.tfr", "b.tfr"):
        _write(tmp_path / name)
    ds = datasets.tfrecord_dataset([f"file://{tmp_path}/a.tfr", f"file://{tmp_path}/b.tfr"], on_corrupt="skip")
    for _ in ds.take(2 * RECORDS):  # the first pass opens what stays open (TF's threads, the stage folder)
        pass
    before = len(os.listdir("/proc/self/fd"))
    assert sum(1 for _ in ds.repeat(20)) == 20 * 2 * RECORDS
    assert len(os.listdir("/proc/self/fd")) - before < 5
