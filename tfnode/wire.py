"""Authenticated framing shared by the reservation server and the feed: JSON headers plus raw numpy buffers.

Why not pickle (as TFoS does): anyone who can reach a port could make a pickle run code. Every frame here carries
an HMAC-SHA256 over header and payload with the per-cluster secret, and is checked before anything is decoded;
arrays travel as raw bytes with a dtype and shape in the header (object dtypes are refused), so nothing is
unpickled at all.

Frame: ``!IQ`` (header length, payload length) | header JSON | payload | 32-byte MAC.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import socket
import struct
from collections.abc import Sequence
from typing import Any

import numpy as np

_PREFIX = struct.Struct("!IQ")
_MAC_LEN = 32
MAX_HEADER = 64 << 20
MAX_PAYLOAD = 4 << 30


class AuthError(ConnectionError):
    """A frame whose MAC does not match: wrong secret or tampered data. The connection must be dropped."""


def _mac(key: bytes, prefix: bytes, header: bytes, buffers: Sequence[memoryview | bytes]) -> bytes:
    h = hmac.new(key, prefix, hashlib.sha256)
    h.update(header)
    for buf in buffers:
        h.update(buf)
    return h.digest()


def _as_contiguous(arr: np.ndarray) -> np.ndarray:
    if arr.dtype.hasobject:
        raise TypeError(f"cannot send an array of dtype {arr.dtype} (object arrays are never pickled)")
    return np.ascontiguousarray(arr)


def send(sock: socket.socket, key: bytes, header: dict[str, Any], arrays: Sequence[np.ndarray] = ()) -> None:
    """Sends one authenticated frame; `arrays` are appended raw and described in header['_arrays']."""
    arrays = [_as_contiguous(np.asarray(a)) for a in arrays]
    header = dict(header)
    if arrays:
        header["_arrays"] = [[a.dtype.str, list(a.shape)] for a in arrays]
    head = json.dumps(header, separators=(",", ":")).encode()
    buffers = [memoryview(a).cast("B") if a.nbytes else b"" for a in arrays]
    prefix = _PREFIX.pack(len(head), sum(a.nbytes for a in arrays))
    mac = _mac(key, prefix, head, buffers)
    sock.sendall(prefix + head)
    for buf in buffers:
        if len(buf):
            sock.sendall(buf)
    sock.sendall(mac)


def _recv_exact(sock: socket.socket, n: int) -> bytearray:
    buf = bytearray(n)
    view = memoryview(buf)
    got = 0
    while got < n:
        k = sock.recv_into(view[got:], n - got)
        if k == 0:
            raise ConnectionError(f"connection closed by peer ({got} of {n} bytes of a frame read)")
        got += k
    return buf


def recv(sock: socket.socket, key: bytes) -> tuple[dict[str, Any], list[np.ndarray]]:
    """Reads one frame, checks its MAC, then decodes it. Raises ConnectionError on EOF, AuthError on a bad MAC."""
    prefix = bytes(_recv_exact(sock, _PREFIX.size))
    head_len, payload_len = _PREFIX.unpack(prefix)
    if head_len > MAX_HEADER or payload_len > MAX_PAYLOAD:
        raise AuthError(f"frame too large ({head_len} + {payload_len} bytes): not a tfoy peer")
    head = bytes(_recv_exact(sock, head_len))
    payload = _recv_exact(sock, payload_len) if payload_len else bytearray()
    mac = bytes(_recv_exact(sock, _MAC_LEN))
    if not hmac.compare_digest(mac, _mac(key, prefix, head, [payload])):
        raise AuthError("frame failed authentication (wrong cluster secret?)")
    header = json.loads(head)
    arrays: list[np.ndarray] = []
    offset = 0
    for dtype_str, shape in header.pop("_arrays", []):
        dtype = np.dtype(dtype_str)
        if dtype.hasobject:
            raise AuthError(f"refusing object dtype {dtype_str}")
        count = int(np.prod(shape, dtype=np.int64))
        arr = np.frombuffer(payload, dtype=dtype, count=count, offset=offset).reshape(shape)
        offset += count * dtype.itemsize
        arrays.append(arr)
    return header, arrays
