"""The Python CSV check accepts exactly the lines TF's decode_csv accepts, and splits them the same way.

When they disagree, a line TF rejects goes unnamed ("no bad line was found") or skip mode cuts a good line.
"""

from __future__ import annotations

import random

import pytest
import tensorflow as tf

from hdfs_io import csv_check


def _tf_fields(line: str) -> list[str] | None:
    """TF's fields of one line, or None when it rejects the line whatever the field count."""
    for count in range(1, 10):
        try:
            cols = tf.io.decode_csv([line], [tf.constant([""])] * count)
        except tf.errors.InvalidArgumentError as exc:
            if "but have 0 in record" in exc.message:
                return []  # a line with no field at all (empty, or only CRs): wrong for any count
            continue
        return [c.numpy()[0].decode() for c in cols]
    return None


LINES = ['', '\r', 'a,b', '"a,b",c', '"say ""hi""",x', '"",', ',', '"a""",b', 'a,"b"', '"a\rb",c', '"x\ny",z',
         'a"b,c', '"a"b,c', '"a" ,b', ' "a",b', '"a', 'a\rb', 'a,b\r', '"a""', '"""",x', 'a,,', '"a,b"c"']


@pytest.mark.parametrize("line", LINES)
def test_split_agrees_with_tensorflow(line):
    fields, problem, _ = csv_check.split_csv_line(line, ",")
    assert (fields if problem is None else None) == _tf_fields(line), (line, problem)


def test_split_agrees_with_tensorflow_on_random_lines():
    rng = random.Random(4180)
    lines = {"".join(rng.choice('a,"\r\n ') for _ in range(rng.randint(0, 8))) for _ in range(2000)}
    mismatches = []
    for line in sorted(lines):
        fields, problem, _ = csv_check.split_csv_line(line, ",")
        if (fields if problem is None else None) != _tf_fields(line):
            mismatches.append((line, fields, problem, _tf_fields(line)))
    assert not mismatches, mismatches[:10]


def test_bad_lines_are_named_by_physical_line_with_crlf_and_quoted_newlines(tmp_path):
    path = tmp_path / "f.csv"
    path.write_bytes(b'id,s\r\n1,"a\r\nb"\r\n2,"c"d\r\n3,e\r\n4,"f\n\ng"\n5,h"\nx,i\n')
    spec = csv_check.CsvSpec((tf.int32, ""), True, None, ",", "")
    bad = csv_check.find_bad_lines(str(path), spec)
    assert [(b.line, b.last) for b in bad] == [(2, 3), (4, 4), (6, 8), (9, 9), (10, 10)], bad
    assert "newline inside a quoted field (the record spans lines 6-8)" in bad[2].reason
    assert bad[3].reason.startswith("column 1: quote inside an unquoted field")
    assert bad[4].reason == "column 0: cannot parse 'x' as int"


def test_select_cols_past_a_records_end_name_the_line_not_an_index_error(tmp_path):
    """The record width is the first record's; a selected column beyond it raised a bare IndexError."""
    path = tmp_path / "f.csv"
    path.write_text("a,b,c\n1,2,3\n")
    spec = csv_check.CsvSpec((tf.int32, tf.int32), True, (0, 5), ",", "")
    bad = csv_check.find_bad_lines(str(path), spec)
    assert [(b.line, b.reason) for b in bad] == [(2, "column 5: the record has 3 fields")]
