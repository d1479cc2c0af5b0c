"""Delegation tokens in a YARN container, findable by the NameNode address the job uses.

Hadoop names an HDFS delegation token by the NameNode's `ip:port` (hadoop.security.token.service.use_ip, true
by default), and the Java client looks tokens up the same way. hdfs-native (Python wheel and the Rust reader behind
TF's hdfs://) looks them up by the address as written in the URI, `host:port`, so on a default-configured secure
cluster it finds no token and falls back to Kerberos, which a container has no ticket for (GSS_S_NO_CRED). The
same gap libhdfs3 had. `alias_tokens` writes a copy of the container's token file in which every HDFS token named
`ip:port` is also named `host:port` for each NameNode host of the configuration that resolves to that ip, and
points HADOOP_TOKEN_FILE_LOCATION at it.

The file format is Hadoop's Credentials storage, "HDTS" + version 0 (Writable: what the NodeManager writes);
a version-1 (protobuf) file is left as it is.
"""

from __future__ import annotations

import io
import logging
import os
import socket
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from hdfs_io.paths import default_fs

log = logging.getLogger(__name__)

MAGIC = b"HDTS"
HDFS_TOKEN = "HDFS_DELEGATION_TOKEN"
TOKEN_ENV = "HADOOP_TOKEN_FILE_LOCATION"
DEFAULT_RPC_PORT = 8020


# ---- Hadoop WritableUtils variable-length integers ---------------------------------------------------------------
def read_vlong(f: io.BytesIO) -> int:
    first = int.from_bytes(f.read(1), "big", signed=True)
    if first >= -112:
        return first
    negative = first < -120
    size = (-119 - first) if negative else (-111 - first)
    value = int.from_bytes(f.read(size - 1), "big")
    return ~value if negative else value


def write_vlong(value: int) -> bytes:
    if -112 <= value <= 127:
        return value.to_bytes(1, "big", signed=True)
    marker = -112
    if value < 0:
        value, marker = ~value, -120
    body = value.to_bytes((value.bit_length() + 7) // 8, "big")
    return (marker - len(body)).to_bytes(1, "big", signed=True) + body


def _read_bytes(f: io.BytesIO) -> bytes:
    return f.read(read_vlong(f))


def _bytes(data: bytes) -> bytes:
    return write_vlong(len(data)) + data


@dataclass(frozen=True)
class Token:
    alias: bytes
    identifier: bytes
    password: bytes
    kind: str
    service: str

    def encode(self) -> bytes:
        return b"".join([_bytes(self.alias), _bytes(self.identifier), _bytes(self.password),
                         _bytes(self.kind.encode()), _bytes(self.service.encode())])


def read_tokens(data: bytes) -> tuple[list[Token], bytes] | None:
    """(tokens, the rest of the file: its secret keys) of a version-0 file, or None for another version."""
    if data[:4] != MAGIC:
        raise ValueError("not a Hadoop token file (no HDTS magic)")
    if data[4:5] != b"\x00":
        return None
    f = io.BytesIO(data[5:])
    tokens = []
    for _ in range(read_vlong(f)):
        alias, identifier, password = _read_bytes(f), _read_bytes(f), _read_bytes(f)
        tokens.append(Token(alias, identifier, password, _read_bytes(f).decode(), _read_bytes(f).decode()))
    return tokens, f.read()


def write_tokens(tokens: list[Token], rest: bytes) -> bytes:
    return MAGIC + b"\x00" + write_vlong(len(tokens)) + b"".join(t.encode() for t in tokens) + rest


def namenode_hosts(extra_uris: tuple[str, ...] = ()) -> set[tuple[str, int]]:
    """(host, port) of every NameNode the configuration names: the defaultFS, `dfs.namenode.rpc-address*`, and
    the job's own hdfs:// URIs."""
    found = set()
    for uri in (default_fs(), *extra_uris):
        parts = urlsplit(uri)
        if parts.scheme == "hdfs" and parts.hostname:
            found.add((parts.hostname, parts.port or DEFAULT_RPC_PORT))
    conf = os.environ.get("HADOOP_CONF_DIR")
    site = Path(conf) / "hdfs-site.xml" if conf else None
    if site and site.exists():
        import xml.etree.ElementTree as ET

        for prop in ET.parse(site).getroot().iter("property"):
            name = prop.findtext("name") or ""
            if name.startswith("dfs.namenode.rpc-address"):
                host, _, port = (prop.findtext("value") or "").strip().rpartition(":")
                if host and port.isdigit():
                    found.add((host, int(port)))
    return found


def _addresses(host: str) -> set[str]:
    try:
        return {info[4][0] for info in socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)}
    except OSError:
        return set()


def with_host_aliases(tokens: list[Token], hosts: set[tuple[str, int]]) -> list[Token]:
    """The tokens plus, for each HDFS token named ip:port, a copy named host:port for each host at that ip."""
    named = {t.service for t in tokens}
    added = []
    for token in tokens:
        if token.kind != HDFS_TOKEN:
            continue
        ip, _, port = token.service.rpartition(":")
        for host, host_port in sorted(hosts):
            alias = f"{host}:{host_port}"
            if str(host_port) == port and alias not in named and ip in _addresses(host):
                added.append(Token(token.alias + b"@" + host.encode(), token.identifier, token.password,
                                   token.kind, alias))
                named.add(alias)
    return tokens + added


def alias_tokens(workdir: Path, extra_uris: tuple[str, ...] = ()) -> Path | None:
    """In a container of a secure application: a token file with host aliases in `workdir`, made this process's
    HADOOP_TOKEN_FILE_LOCATION (children inherit it). None when there is nothing to do."""
    source = os.environ.get(TOKEN_ENV)
    if not source or not Path(source).is_file():
        return None
    parsed = read_tokens(Path(source).read_bytes())
    if parsed is None:
        log.info("%s: a protobuf token file, left as it is", source)
        return None
    tokens, rest = parsed
    aliased = with_host_aliases(tokens, namenode_hosts(extra_uris))
    if len(aliased) == len(tokens):
        return None
    target = workdir / ".tfoy-container-tokens"
    tmp = target.with_suffix(".tmp")
    tmp.write_bytes(write_tokens(aliased, rest))
    tmp.chmod(0o600)
    tmp.replace(target)
    os.environ[TOKEN_ENV] = str(target)
    log.info("HDFS delegation tokens also named %s (hdfs-native looks them up by host:port)",
             ", ".join(t.service for t in aliased[len(tokens):]))
    return target
