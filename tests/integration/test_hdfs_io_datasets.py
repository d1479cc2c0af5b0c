"""tf.data readers on the real cluster: TFRecord / CSV, sharding, shuffling, GZIP, and bad input."""

from __future__ import annotations

import gzip
import os
import re

import numpy as np
import pytest
import tensorflow as tf

from hdfs_io import datasets, fs, staging
from hdfs_io.records import HEADER, make_example, scan_frames, write_tfrecords
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
    area = staging.new_stage_dir(None)
    os.rmdir(area)
    assert area.startswith("/dev/shm/tfoy-stage-")  # this machine has a /dev/shm with room
    monkeypatch.setenv("TFOY_STAGE_DIR", str(tmp_path))
    assert staging.new_stage_dir(None).startswith(f"{tmp_path}/tfoy-stage-")
    assert staging.new_stage_dir(str(tmp_path / "x")).startswith(f"{tmp_path}/x/tfoy-stage-")


def test_staging_folders_of_dead_processes_are_removed(tmp_path):
    import subprocess
    import sys

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    orphan = tmp_path / f"tfoy-stage-{int(dead.stdout)}-abc123"
    orphan.mkdir()
    (orphan / "s-part-0.tfrecord").write_bytes(b"x" * 100)
    alive = tmp_path / f"tfoy-stage-{os.getppid()}-def456"  # pytest's parent: alive
    alive.mkdir()
    mine = staging.new_stage_dir(str(tmp_path))
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


# ---- corrupt lengths, many corrupt records --------------------------------------------------------------------------


def _damaged_part(hdfs_tmp: str, how: str, gz: bool = False) -> tuple[str, int, str]:
    """part-00 good (ids 0-9), part-01 (ids 10-19) damaged at its 6th record: a length bit flipped so that the
    length runs past the end of the file, or the file cut inside that record. Returns (URI, offset, reason)."""
    uris = _write_parts(hdfs_tmp, 2, 10)
    data = bytearray(fs.read_bytes(uris[1]))
    rec = len(data) // 10
    offset = 5 * rec
    if how == "length":
        data[offset + 2] ^= 0x01  # +65536
        assert offset + int.from_bytes(data[offset:offset + 8], "little") > len(data)  # past the end, not inside
        reason = "length checksum mismatch"
    else:
        data = data[: offset + 30]
        reason = "truncated record"
    if gz:
        for uri in uris:
            raw = bytes(data) if uri == uris[1] else fs.read_bytes(uri)
            fs.write_bytes(uri + ".gz", gzip.compress(raw))
            fs.delete(uri)
        return uris[1] + ".gz", offset, reason
    fs.write_bytes(uris[1], bytes(data))
    return uris[1], offset, reason


@pytest.mark.parametrize("how", ["length", "truncated"])
@pytest.mark.parametrize("path", ["streamed", "staged"])
def test_length_past_the_end_is_a_checksum_mismatch_not_truncation(hdfs_tmp, how, path):
    # streamed: checked by the filesystem plugin as bytes pass; staged (GZIP): explained by the Python scan
    uri, offset, reason = _damaged_part(hdfs_tmp, how, gz=path == "staged")
    with pytest.raises(tf.errors.OpError) as info:
        _ids(datasets.tfrecord_dataset(f"{hdfs_tmp}/*", compression="GZIP" if path == "staged" else None))
    message = str(info.value)
    assert f"{uri}: corrupt TFRecord at byte offset {offset}: {reason}" in message, message
    if how == "length":
        assert "truncated" not in message, message


@pytest.mark.parametrize("how", ["length", "truncated"])
def test_skipped_bad_length_is_logged_as_a_checksum_mismatch(hdfs_tmp, caplog, how):
    uri, offset, reason = _damaged_part(hdfs_tmp, how)
    stats = datasets.ReadStats()
    with caplog.at_level("WARNING", logger="hdfs_io.datasets"):
        ids = _ids(datasets.tfrecord_dataset(f"{hdfs_tmp}/*", on_corrupt="skip", stats=stats))
    assert sorted(ids) == list(range(15)) and stats.corrupt_records_skipped == 1  # the rest of part-01 is lost
    warnings = [r.getMessage() for r in caplog.records if uri in r.getMessage()]
    assert any(f"{uri}: corrupt TFRecord at byte offset {offset}: {reason}" in w for w in warnings), warnings


def test_many_corrupt_records_in_one_file_are_skipped_in_a_bounded_number_of_reads(hdfs_tmp, tmp_path, monkeypatch):
    from tests.unit.test_skip_mode_read_passes import ReadCounter

    uri = _write_parts(hdfs_tmp, 1, 300)[0]
    data = bytearray(fs.read_bytes(uri))
    frames, _ = scan_frames(bytes(data))  # ids past 127 take another varint byte: records differ in length
    bad = list(range(1, 300, 4))  # 75 records with a bad data CRC
    for i in bad:
        data[frames[i].offset + HEADER + 3] ^= 0xFF
    fs.write_bytes(uri, bytes(data))
    area = tmp_path / "stage"
    area.mkdir()
    counter = ReadCounter(monkeypatch, area)
    stats = datasets.ReadStats()
    ids = _ids(datasets.tfrecord_dataset(uri, on_corrupt="skip", stats=stats, stage_dir=str(area)))
    assert ids == [i for i in range(300) if i not in bad]
    assert stats.corrupt_records_skipped == len(bad) and stats.files_staged == 1
    assert counter.total <= 6, counter.reads  # it was one read of the whole file per bad record, and more


# ---- CSV dialect: quoting, CRLF, newlines inside quotes --------------------------------------------------------------

CSV_MODES = {  # how csv_dataset reads a file: checked stream, staged GZIP, skip mode (staged), checked batches
    "streamed": {},
    "gzip": {"compression": "GZIP"},
    "skip": {"on_bad_line": "skip"},
    "batched": {"batch_size": 2},
}


def _csv_rows_of(hdfs_tmp: str, name: str, text: str, mode: str, **kw) -> tuple[str, list[tuple]]:
    uri = _csv(hdfs_tmp, name, text, gz=mode == "gzip")
    ds = datasets.csv_dataset(uri, [tf.int32, "", "?"], **CSV_MODES[mode], **kw)
    if mode == "batched":
        ds = ds.unbatch()
    return uri, [(i, a.decode(), b.decode()) for i, a, b in _rows(ds)]


@pytest.mark.parametrize("mode", list(CSV_MODES))
def test_csv_quoting_and_crlf_read_as_rfc_4180_says(hdfs_tmp, mode):
    text = ('id,text,last\r\n'
            '1,"a, b",plain\r\n'
            '2,"say ""hi""","quoted, last"\r\n'
            '3,,"""q"""\r\n'
            '4,x,y')  # no line end after the last line
    _, rows = _csv_rows_of(hdfs_tmp, "q.csv", text, mode)
    assert rows == [(1, "a, b", "plain"), (2, 'say "hi"', "quoted, last"), (3, "", '"q"'), (4, "x", "y")]
    assert not any("\r" in field for row in rows for field in row[1:])


@pytest.mark.parametrize("mode", ["streamed", "gzip", "batched"])
@pytest.mark.parametrize("line,reason", [
    ('3,"two\nlines",z\n', "newline inside a quoted field (the record spans lines 3-4)"),
    ('3,"two\r\nlines",z\r\n', "newline inside a quoted field (the record spans lines 3-4)"),
    ('3,ab"c,z\n', 'column 1: quote inside an unquoted field'),
    ('3,"ab"c,z\n', "column 1: text after a quoted field's closing quote"),
    ('3,"open,z\n', "column 1: quoted field not closed on this line"),
])
def test_bad_csv_quoting_names_file_and_line(hdfs_tmp, mode, line, reason):
    text = "id,text,last\n1,a,b\n" + line + "5,e,f\n"
    with pytest.raises(tf.errors.OpError) as info:
        _csv_rows_of(hdfs_tmp, "bad.csv", text, mode)
    assert f"{fs.absolute_uri(hdfs_tmp)}/bad.csv:3: {reason}" in str(info.value), str(info.value)


def test_bad_csv_quoting_is_skipped_with_the_right_line_numbers(hdfs_tmp, caplog):
    text = ('id,text,last\r\n'
            '1,"a\r\nb",c\r\n'  # lines 2-3: one record, a newline inside quotes
            '4,d,e\r\n'
            '5,"f"g,h\r\n'  # line 5
            '6,"i\r\n'  # line 6: its quote never closes (lines 6-9 do not parse as one record either)
            '7,j,k\r\n'
            '8,"l ""m"" n",o\r\n'
            '9,"p\n\nq",r\n'  # lines 9-11
            'x,s,t\n'  # line 12: not an int
            '13,u,v')
    stats = datasets.ReadStats()
    with caplog.at_level("WARNING", logger="hdfs_io.datasets"):
        uri, rows = _csv_rows_of(hdfs_tmp, "mixed.csv", text, "skip", stats=stats)
    assert rows == [(4, "d", "e"), (7, "j", "k"), (8, 'l "m" n', "o"), (13, "u", "v")]
    assert stats.bad_lines_skipped == 8  # physical lines: 2-3, 5, 6, 9-11, 12
    logged = [r.getMessage() for r in caplog.records if r.getMessage().startswith(uri)]
    lines = [int(re.match(re.escape(uri) + r":(\d+): ", m).group(1)) for m in logged]
    assert lines == [2, 5, 6, 9, 12], logged
    assert "lines 9-11 skipped" in logged[3] and "cannot parse 'x'" in logged[4], logged


# ---- hidden files: _SUCCESS, .crc, writers' temporaries -------------------------------------------------------------


def _job_output(hdfs_tmp: str) -> str:
    """A folder as a Hadoop / Spark job leaves it: part files, `_SUCCESS`, checksum files, a writer's temporary,
    and a `_temporary` folder with a task's unfinished part. None of the extras holds records."""
    base = f"{hdfs_tmp}/out"
    _write_parts(base, 2, 5)
    fs.write_bytes(f"{base}/_SUCCESS", b"")
    fs.write_bytes(f"{base}/.x.crc", b"crc\x00\x00\x00\x01garbage")
    fs.write_bytes(f"{base}/.part-00.tfrecord.crc", b"crc\x00\x00\x00\x01garbage")
    fs.write_bytes(f"{base}/.part-02.tfrecord.tfoy-tmp-1a2b3c", b"half a record")
    _write_parts(f"{base}/_temporary/0", 1, 5)
    return base


@pytest.mark.parametrize("pattern", ["{base}", "{base}/", "{base}/*", "{base}/*.*", "{base}/[._p]*", "{base}/**"])
def test_hidden_files_in_a_data_folder_are_not_read(hdfs, hdfs_tmp, pattern):
    base = _job_output(hdfs_tmp)
    assert {s.path.rsplit("/", 1)[-1] for s in hdfs.list_status(base)} >= {"_SUCCESS", ".x.crc", "_temporary"}
    path = pattern.format(base=base)
    assert [u.rsplit("/", 1)[-1] for u in datasets.expand_paths(path)] == ["part-00.tfrecord", "part-01.tfrecord"]
    assert sorted(_ids(datasets.tfrecord_dataset(path))) == list(range(10))
    stats = datasets.ReadStats()
    assert sorted(_ids(datasets.tfrecord_dataset(path, on_corrupt="skip", stats=stats))) == list(range(10))
    assert stats.corrupt_records_skipped == 0 and stats.files_staged == 2


def test_hidden_files_next_to_csv_parts_are_not_read(hdfs_tmp):
    for part in range(2):
        _csv(hdfs_tmp, f"part-{part}.csv", f"a,b\n{part},{part * 10}\n")
    _csv(hdfs_tmp, "_SUCCESS", "")
    _csv(hdfs_tmp, ".part-0.csv.crc", "crc\x00\n\x01garbage\n")  # read as CSV: a header, then a bad line
    for path in (hdfs_tmp, f"{hdfs_tmp}/*"):
        assert sorted(_rows(datasets.csv_dataset(path, [tf.int32, tf.int32]))) == [(0, 0), (1, 10)]


def test_a_glob_of_only_hidden_files_says_so_and_a_named_one_is_read(hdfs_tmp):
    base = _job_output(hdfs_tmp)
    with pytest.raises(FileNotFoundError, match=r"matches only hidden files .*_SUCCESS"):
        datasets.expand_paths(f"{base}/_*")
    # asked for by name, a file is read whatever it is called (like `hadoop fs -cat`)
    named = f"{base}/_temporary/0/part-00.tfrecord"
    assert datasets.expand_paths(named) == [fs.absolute_uri(named)]
    assert sorted(_ids(datasets.tfrecord_dataset(named))) == list(range(5))
