"""TFRecord framing and CRC32C (no cluster needed)."""

from __future__ import annotations

import re
import struct

import numpy as np
import pytest

from hdfs_io import records


def test_crc32c_known_vector_and_masking():
    rows = np.frombuffer(b"123456789", dtype=np.uint8).reshape(1, -1)
    assert int(records.crc32c_rows(rows)[0]) == 0xE3069283  # the standard CRC-32C check value
    crc = 0xE3069283
    expected = ((((crc >> 15) | (crc << 17)) & 0xFFFFFFFF) + 0xA282EAD8) & 0xFFFFFFFF
    assert records.masked_crc32c(b"123456789") == expected


def _framed(payloads: list[bytes]) -> bytes:
    out = b""
    for p in payloads:
        length = struct.pack("<Q", len(p))
        out += length + struct.pack("<I", records.masked_crc32c(length)) + p + b"\0\0\0\0"  # data crc unchecked
    return out


def test_scan_frames_matches_tensorflows_writer(tmp_path):
    tf = pytest.importorskip("tensorflow")
    path = tmp_path / "r.tfrecord"
    with tf.io.TFRecordWriter(str(path)) as w:
        for n in (0, 1, 300, 70000):
            w.write(b"x" * n)
    frames, error = records.scan_frames(path.read_bytes())
    assert error is None and [f.length for f in frames] == [0, 1, 300, 70000]
    assert frames[-1].end == path.stat().st_size


def test_scan_frames_errors_name_the_offset():
    data = _framed([b"a" * 10, b"b" * 20, b"c" * 30])
    second = 16 + 10
    frames, error = records.scan_frames(data[:-5], "hdfs://nn/f")
    assert len(frames) == 2 and error.offset == second + 16 + 20 and "truncated record" in str(error)
    assert "hdfs://nn/f" in str(error)
    bad = bytearray(data)
    bad[second] ^= 0x02  # length 20 -> 22: still inside the file, only its CRC tells
    frames, error = records.scan_frames(bytes(bad))
    assert len(frames) == 1 and error.offset == second and "length checksum" in error.reason
    frames, error = records.scan_frames(data[:5])
    assert frames == [] and error.offset == 0 and "truncated header" in error.reason
    assert records.scan_frames(b"") == ([], None)


def test_make_example_types():
    pytest.importorskip("tensorflow")
    ex = records.make_example({"i": [1, 2], "f": np.float32(0.5), "s": "text", "b": b"raw", "a": np.arange(3)})
    feats = ex.features.feature
    assert list(feats["i"].int64_list.value) == [1, 2] and list(feats["a"].int64_list.value) == [0, 1, 2]
    assert list(feats["f"].float_list.value) == [0.5]
    assert list(feats["s"].bytes_list.value) == [b"text"] and list(feats["b"].bytes_list.value) == [b"raw"]


def test_length_flipped_past_the_end_is_a_length_checksum_mismatch_not_truncation():
    data = _framed([b"a" * 10, b"b" * 20, b"c" * 30])
    second = 16 + 10
    for byte, what in ((2, "runs past the end"), (7, "implausible")):
        bad = bytearray(data)
        bad[second + byte] ^= 0x01  # length 20 -> 65556 or 2**56 + 20: no such record fits in this file
        (length,) = struct.unpack_from("<Q", bad, second)
        assert second + 16 + length > len(bad), what
        frames, error = records.scan_frames(bytes(bad), "hdfs://nn/f")
        assert len(frames) == 1 and error.offset == second, what
        assert error.reason == "length checksum mismatch", (what, error.reason)
        assert str(error) == f"hdfs://nn/f: corrupt TFRecord at byte offset {second}: length checksum mismatch"


def test_truncated_file_with_a_valid_length_is_still_truncated():
    data = _framed([b"a" * 10, b"b" * 20, b"c" * 30])
    third = 2 * 16 + 10 + 20
    for cut in (third + 12, third + 12 + 29, len(data) - 1):  # after the header, inside the data, in the footer
        frames, error = records.scan_frames(data[:cut])
        assert len(frames) == 2 and error.offset == third, cut
        assert error.reason == f"truncated record (length 30, file ends at {cut})"


def test_earliest_damage_is_reported_when_a_bad_length_derails_the_walk():
    # the first record's length grows by 26 (still inside the file): the walk lands in the middle of the second
    # record and then reads garbage as a length running past the end; the damage is the first record's length
    data = _framed([b"a" * 10, b"b" * 20, b"c" * 30])
    bad = bytearray(data)
    bad[0] ^= 10 ^ 36
    frames, error = records.scan_frames(bytes(bad))
    assert frames == [] and error.offset == 0 and error.reason == "length checksum mismatch"


def test_write_tfrecords_never_replaces_a_folder_of_parts(tmp_path):
    """The defect: write_tfrecords("…/train", …) onto a data set's folder (overwrite=True, the default) swapped the
    whole folder for one file, its part files gone."""
    from hdfs_io.records import write_tfrecords

    (tmp_path / "train").mkdir()
    (tmp_path / "train" / "part-00000").write_bytes(b"theirs")
    with pytest.raises(IsADirectoryError, match=f"{tmp_path}/train: a folder; a TFRecord file goes at a file's path"):
        write_tfrecords(f"file://{tmp_path}/train", [b"a"])
    assert (tmp_path / "train" / "part-00000").read_bytes() == b"theirs"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["train"]


@pytest.mark.parametrize("value, error, message", [
    (np.array([3, 2], dtype=object), TypeError, "feature 'f': 3 (int) in a bytes feature"),  # was b"\0\0\0", b"\0\0"
    ([1, "a"], None, None),  # numpy makes these strings: kept as TFoS's str → bytes
    ([None], TypeError, "feature 'f': None (NoneType) in a bytes feature"),
    ([2**63], ValueError, "feature 'f': 9223372036854775808 does not fit an int64_list"),  # wrapped negative
    ([2**64], TypeError, "feature 'f': 18446744073709551616 (int) in a bytes feature"),
])
def test_make_example_refuses_values_it_would_corrupt(value, error, message):
    if error is None:
        assert records.make_example({"f": value}).features.feature["f"].bytes_list.value == [b"1", b"a"]
        return
    with pytest.raises(error, match=re.escape(message)):
        records.make_example({"f": value})
