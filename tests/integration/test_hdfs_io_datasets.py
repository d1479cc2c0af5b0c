"""tf.data readers on the real cluster: TFRecord / CSV, sharding, shuffling, GZIP, and bad input."""

from __future__ import annotations

import gzip
import os

import numpy as np
import pytest
import tensorflow as tf

from hdfs_io import datasets, fs
from hdfs_io.records import make_example, write_tfrecords
from tfnode.context import NodeContext

pytestmark = pytest.mark.integration

SPEC = {"id": tf.io.FixedLenFeature([], tf.int64), "x": tf.io.FixedLenFeature([3], tf.float32)}


def _write_parts(base: str, files: int, per_file: int, compression: str | None = None) -> list[str]:
    uris = []
    for f in range(files):
        ids = range(f * per_file, (f + 1) * per_file)
        uri = f"{base}/part-{f:02d}.tfrecord" + (".gz" if compression else "")
        n = write_tfrecords(uri, (make_example({"id": i, "x": [i, i + 0.5, -i]}) for i in ids), compression)
        assert n == per_file
        uris.append(uri)
    return uris


def _ids(ds) -> list[int]:
    ds = ds.batch(64).map(lambda b: tf.io.parse_example(b, SPEC))
    return [int(i) for batch in ds for i in batch["id"].numpy()]


def test_tfrecord_round_trip_on_hdfs(hdfs, hdfs_tmp):
    _write_parts(hdfs_tmp, 4, 50)
    assert hdfs.get_file_info(f"{hdfs_tmp}/part-00.tfrecord").length > 0  # really written to HDFS
    stats = datasets.ReadStats()
    ds = datasets.tfrecord_dataset(f"{hdfs_tmp}/part-*.tfrecord", stats=stats)
    ids = _ids(ds)
    assert sorted(ids) == list(range(200))
    # streamed by TF itself through tfoy's filesystem plugin, nothing copied to local disk
    assert stats.files_streamed == 4 and stats.files_staged == 0 and stats.corrupt_records_skipped == 0
    assert stats.bytes_streamed == sum(f.size for f in fs.ls(hdfs_tmp))
    parsed = next(iter(ds.batch(1).map(lambda b: tf.io.parse_example(b, SPEC))))
    i = int(parsed["id"][0])
    np.testing.assert_allclose(parsed["x"][0].numpy(), [i, i + 0.5, -i])
    # a folder means its files; a second epoch re-stages and reads everything again
    assert sorted(_ids(datasets.tfrecord_dataset(hdfs_tmp).repeat(2))) == sorted(list(range(200)) * 2)


def test_sharding_by_file_from_a_node_context_and_seeded_shuffle(hdfs_tmp):
    _write_parts(hdfs_tmp, 6, 5)
    spec = {"worker": ["h:1", "h:2", "h:3"]}
    per_worker = []
    for index in range(3):
        ctx = NodeContext(job_name="worker", task_index=index, cluster_spec=spec)
        assert ctx.num_shards == 3
        ds = datasets.tfrecord_dataset(f"{hdfs_tmp}/*", ctx=ctx, shuffle_files=True, seed=7)
        per_worker.append(_ids(ds))
    assert all(len(ids) == 10 for ids in per_worker)  # two whole files each
    assert sorted(sum(per_worker, [])) == list(range(30))  # disjoint and complete
    files = fs.glob(f"{hdfs_tmp}/*")
    assert datasets.shard_files(files, 3, 1, True, 7) == datasets.shard_files(files, 3, 1, True, 7)
    orders = {tuple(datasets.shard_files(files, 1, 0, True, seed)) for seed in range(5)}
    assert len(orders) > 1  # the seed changes the file order
    with pytest.raises(ValueError, match="7 workers"):
        datasets.shard_files(files, 7, 6)


def test_deterministic_interleave_order_and_explicit_shards(hdfs_tmp):
    _write_parts(hdfs_tmp, 2, 3)
    ds = datasets.tfrecord_dataset(f"{hdfs_tmp}/*", num_shards=1, shard_index=0, cycle_length=2, deterministic=True)
    assert _ids(ds) == [0, 3, 1, 4, 2, 5]
    assert _ids(datasets.tfrecord_dataset(f"{hdfs_tmp}/*", num_shards=2, shard_index=1)) == [3, 4, 5]


def test_gzip_tfrecords(hdfs_tmp):
    uris = _write_parts(hdfs_tmp, 2, 20, compression="GZIP")
    assert fs.read_bytes(uris[0])[:2] == b"\x1f\x8b"  # really compressed
    assert sorted(_ids(datasets.tfrecord_dataset(f"{hdfs_tmp}/*.gz", compression="GZIP"))) == list(range(40))


def test_local_files_through_the_same_api(tmp_path):
    _write_parts(f"file://{tmp_path}", 2, 10)
    ids = _ids(datasets.tfrecord_dataset(f"file://{tmp_path}/*.tfrecord", verify=False))  # TF's own reader
    assert sorted(ids) == list(range(20))
    assert sorted(_ids(datasets.tfrecord_dataset(f"file://{tmp_path}/*.tfrecord"))) == list(range(20))


def test_missing_path_and_empty_glob_name_it(hdfs_tmp):
    with pytest.raises(FileNotFoundError, match=f"{hdfs_tmp}/nothing-here"):
        datasets.tfrecord_dataset(f"{hdfs_tmp}/nothing-here")
    with pytest.raises(FileNotFoundError, match=r"\*\.tfrecord"):
        datasets.tfrecord_dataset(f"{hdfs_tmp}/*.tfrecord")
    with pytest.raises(FileNotFoundError, match="nope.csv"):
        datasets.csv_dataset([f"{hdfs_tmp}/nope.csv"], [tf.int32])


# ---- corrupt TFRecords ------------------------------------------------------------------------------------------


def _corrupt_copy(hdfs_tmp: str, how: str) -> tuple[str, int]:
    """part-00 is good (ids 0-9); part-01 (ids 10-19) is damaged; returns its URI and the damaged record's offset."""
    uris = _write_parts(hdfs_tmp, 2, 10)
    data = bytearray(fs.read_bytes(uris[1]))
    rec = len(data) // 10  # records have equal length here
    if how == "data":
        data[3 * rec + 20] ^= 0xFF  # inside the 4th record's payload: its data CRC fails
        offset = 3 * rec
    elif how == "length":
        data[5 * rec + 1] ^= 0x01  # the 6th record's length: its length CRC fails
        offset = 5 * rec
    else:
        data = data[: 7 * rec + 30]  # truncated inside the 8th record
        offset = 7 * rec
    fs.write_bytes(uris[1], bytes(data))
    return uris[1], offset


@pytest.mark.parametrize("how", ["data", "length", "truncated"])
def test_corrupt_tfrecord_names_file_and_offset(hdfs_tmp, how):
    uri, offset = _corrupt_copy(hdfs_tmp, how)
    with pytest.raises(tf.errors.OpError) as info:
        _ids(datasets.tfrecord_dataset(f"{hdfs_tmp}/*", deterministic=True))
    message = str(info.value)
    assert f"{uri}: corrupt TFRecord at byte offset {offset}:" in message, message


@pytest.mark.parametrize("how,expected", [("data", 9), ("length", 5), ("truncated", 7)])
def test_corrupt_tfrecords_can_be_skipped_and_counted(hdfs_tmp, how, expected):
    _corrupt_copy(hdfs_tmp, how)
    stats = datasets.ReadStats()
    ids = _ids(datasets.tfrecord_dataset(f"{hdfs_tmp}/*", on_corrupt="skip", stats=stats))
    good_from_bad_file = [i for i in ids if i >= 10]
    assert sorted(i for i in ids if i < 10) == list(range(10))
    assert len(good_from_bad_file) == expected and stats.corrupt_records_skipped == 1
    if how == "data":
        assert 13 not in ids  # exactly the damaged record is gone


def test_bad_gzip_stream_names_the_file(hdfs_tmp):
    uri = _write_parts(hdfs_tmp, 1, 50, compression="GZIP")[0]
    fs.write_bytes(uri, fs.read_bytes(uri)[:-40])
    with pytest.raises(tf.errors.OpError, match=uri):
        _ids(datasets.tfrecord_dataset(uri, compression="GZIP"))


# ---- CSV ------------------------------------------------------------------------------------------------------------


def _csv(hdfs_tmp: str, name: str, text: str, gz: bool = False) -> str:
    data = text.encode()
    fs.write_bytes(f"{hdfs_tmp}/{name}", gzip.compress(data) if gz else data)
    return f"{fs.absolute_uri(hdfs_tmp)}/{name}"


def _rows(ds) -> list[tuple]:
    def value(v):
        x = v.numpy()
        return x.item() if hasattr(x, "item") else x

    return [tuple(value(v) for v in row) for row in ds]


def test_csv_header_defaults_and_column_selection(hdfs_tmp):
    _csv(hdfs_tmp, "a.csv", "id,name,score,extra\n1,ann,0.5,x\n2,bob,,y\n")
    _csv(hdfs_tmp, "b.csv", "id,name,score,extra\n3,cy,1.5,z\n")
    ds = datasets.csv_dataset(f"{hdfs_tmp}/*.csv", [tf.int64, "?", -1.0], select_cols=[0, 1, 2],
                              deterministic=True, cycle_length=1)
    rows = [(i, n.decode(), round(s, 3)) for i, n, s in _rows(ds)]
    assert rows == [(1, "ann", 0.5), (2, "bob", -1.0), (3, "cy", 1.5)]
    ds = datasets.csv_dataset(f"{hdfs_tmp}/a.csv", [0, 0.0], select_cols=[0, 2], column_names=["id", "score"])
    first = next(iter(ds))
    assert set(first) == {"id", "score"} and int(first["id"]) == 1
    batches = list(datasets.csv_dataset(f"{hdfs_tmp}/a.csv", [tf.int64, "?", -1.0], select_cols=[0, 1, 2],
                                        batch_size=5, column_names=["id", "name", "score"]))
    assert len(batches) == 1 and batches[0]["id"].numpy().tolist() == [1, 2]
    assert batches[0]["score"].numpy().tolist() == [0.5, -1.0]


def test_csv_without_header_gzip_and_sharding(hdfs_tmp):
    for f in range(4):
        _csv(hdfs_tmp, f"p{f}.csv.gz", "".join(f"{f * 10 + i},{i}\n" for i in range(3)), gz=True)
    got = []
    for shard in range(2):
        ds = datasets.csv_dataset(f"{hdfs_tmp}/*.csv.gz", [tf.int32, tf.int32], header=False, compression="GZIP",
                                  num_shards=2, shard_index=shard)
        got.append(sorted(r[0] for r in _rows(ds)))
    assert sorted(got[0] + got[1]) == [0, 1, 2, 10, 11, 12, 20, 21, 22, 30, 31, 32]
    assert len(got[0]) == len(got[1]) == 6


@pytest.mark.parametrize("bad,line,reason", [("4,5,6\n", 3, "expected 2 fields, got 3"),
                                             ("4,abc\n", 3, "cannot parse 'abc'")])
def test_bad_csv_line_names_file_and_line(hdfs_tmp, bad, line, reason):
    uri = _csv(hdfs_tmp, "bad.csv", "a,b\n1,2\n" + bad + "7,8\n")
    with pytest.raises(tf.errors.OpError) as info:
        _rows(datasets.csv_dataset(uri, [tf.int32, tf.int32]))
    assert f"{uri}:{line}:" in str(info.value) and reason in str(info.value), str(info.value)


def test_bad_csv_lines_can_be_skipped_and_counted(hdfs_tmp):
    uri = _csv(hdfs_tmp, "bad.csv", "a,b\n1,2\n3\n4,x\n5,6\n9,9,9\n")
    stats = datasets.ReadStats()
    rows = _rows(datasets.csv_dataset(uri, [tf.int32, tf.int32], on_bad_line="skip", stats=stats))
    assert rows == [(1, 2), (5, 6)] and stats.bad_lines_skipped == 3


# ---- staging ----------------------------------------------------------------------------------------------------


def test_staged_files_are_deleted_once_read(hdfs_tmp, tmp_path):
    # staged: skipping corrupt records (GZIP and checked CSV too); checked plain TFRecords stream instead
    _write_parts(hdfs_tmp, 3, 40)
    area = tmp_path / "stage"
    area.mkdir()
    stats = datasets.ReadStats()
    ds = datasets.tfrecord_dataset(f"{hdfs_tmp}/*", stage_dir=str(area), on_corrupt="skip", stats=stats)
    assert sorted(_ids(ds)) == list(range(120))
    assert stats.files_staged == 3 and stats.files_streamed == 0
    (folder,) = area.iterdir()  # the dataset's private folder, now empty
    assert list(folder.iterdir()) == []


def test_stage_area_defaults_to_ram_and_follows_the_setting(tmp_path, monkeypatch):
    monkeypatch.delenv("TFOY_STAGE_DIR", raising=False)
    area = datasets._stage_dir(None)
    os.rmdir(area)
    assert area.startswith("/dev/shm/tfoy-stage-")  # this machine has a /dev/shm with room
    monkeypatch.setenv("TFOY_STAGE_DIR", str(tmp_path))
    assert datasets._stage_dir(None).startswith(f"{tmp_path}/tfoy-stage-")
    assert datasets._stage_dir(str(tmp_path / "x")).startswith(f"{tmp_path}/x/tfoy-stage-")


def test_staging_folders_of_dead_processes_are_removed(tmp_path):
    import subprocess
    import sys

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    orphan = tmp_path / f"tfoy-stage-{int(dead.stdout)}-abc123"
    orphan.mkdir()
    (orphan / "s-part-0.tfrecord").write_bytes(b"x" * 100)
    alive = tmp_path / f"tfoy-stage-{os.getppid()}-def456"  # pytest's parent: alive
    alive.mkdir()
    mine = datasets._stage_dir(str(tmp_path))
    assert not orphan.exists() and alive.is_dir() and os.path.isdir(mine)
    assert os.path.basename(mine).startswith(f"tfoy-stage-{os.getpid()}-")


def test_bad_csv_line_in_batches_names_file_and_line(hdfs_tmp):
    good = _csv(hdfs_tmp, "a.csv", "a,b\n" + "".join(f"{i},{i}\n" for i in range(10)))
    bad = _csv(hdfs_tmp, "b.csv", "a,b\n" + "".join(f"{i},{i}\n" for i in range(6)) + "7,x\n8,8\n")
    with pytest.raises(tf.errors.OpError) as info:
        list(datasets.csv_dataset([good, bad], [tf.int32, tf.int32], batch_size=4))
    assert f"{bad}:8:" in str(info.value) and "cannot parse 'x'" in str(info.value), str(info.value)
    stats = datasets.ReadStats()
    batches = list(datasets.csv_dataset(good, [tf.int32, tf.int32], batch_size=4, stats=stats).repeat(2))
    assert [len(b[0]) for b in batches] == [4, 4, 2] * 2
    assert stats.files_streamed == 2 and stats.files_staged == 0  # checked, yet read by TF straight from HDFS
