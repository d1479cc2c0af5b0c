"""Container token files: Hadoop's vint encoding and HDFS tokens renamed to host:port (hdfs_io.tokens)."""

from __future__ import annotations

import io

import pytest

from hdfs_io import tokens


@pytest.mark.parametrize("value", [0, 1, -1, 127, -112, 128, -113, 255, 65_536, -65_536, 2**40, -(2**40)])
def test_vlong_round_trip_matches_hadoop_writable_utils(value):
    assert tokens.read_vlong(io.BytesIO(tokens.write_vlong(value))) == value


def test_known_vlong_bytes():
    # WritableUtils.writeVLong: one byte down to -112, else a length marker and big-endian bytes
    assert tokens.write_vlong(300) == bytes([0x8E, 0x01, 0x2C])
    assert tokens.write_vlong(-113) == bytes([0x87, 0x70])


def test_hdfs_tokens_named_by_ip_get_host_aliases(tmp_path, monkeypatch):
    hdfs = tokens.Token(b"hdfs", b"id-1", b"pw-1", tokens.HDFS_TOKEN, "127.0.0.1:8120")
    rm = tokens.Token(b"rm", b"id-2", b"pw-2", "RM_DELEGATION_TOKEN", "127.0.0.1:8132")
    source = tmp_path / "container_tokens"
    source.write_bytes(tokens.write_tokens([hdfs, rm], b"\x00"))  # no secret keys
    monkeypatch.setenv(tokens.TOKEN_ENV, str(source))
    monkeypatch.setenv("HADOOP_CONF_DIR", str(tmp_path))
    (tmp_path / "core-site.xml").write_text(
        "<configuration><property><name>fs.defaultFS</name><value>hdfs://localhost:8120</value></property>"
        "</configuration>")
    target = tokens.alias_tokens(tmp_path)
    assert target is not None and str(target) == tokens.os.environ[tokens.TOKEN_ENV]
    got, rest = tokens.read_tokens(target.read_bytes())
    assert rest == b"\x00"
    assert [t.service for t in got] == ["127.0.0.1:8120", "127.0.0.1:8132", "localhost:8120"]
    assert got[2].identifier == b"id-1" and got[2].password == b"pw-1"  # the same token, a second name
    assert tokens.alias_tokens(tmp_path) is None  # again: nothing left to add


def test_protobuf_token_files_are_left_alone():
    assert tokens.read_tokens(tokens.MAGIC + b"\x01rest") is None
    with pytest.raises(ValueError, match="HDTS"):
        tokens.read_tokens(b"nope")
