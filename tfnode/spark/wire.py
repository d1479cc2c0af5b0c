"""Authenticated framing shared by the reservation server and the feed: JSON headers plus raw numpy buffers.

Why not pickle (as TFoS does): anyone who can reach a port could make a pickle run code. Every frame here carries
HMAC-SHA256 tags with the per-cluster secret and is checked before anything is decoded; arrays travel as raw bytes
with a dtype and shape in the header (object dtypes are refused), so nothing is unpickled at all.

Why the rest of this module: the ports are reachable by anyone on the network, so a peer is a stranger until its
first tag checks out, and a stranger must not cost more than a small, bounded amount of memory, time or threads.

* Handshake: each side sends ``GREETING | 16-byte random nonce`` at once; both nonces make the session id. Every
  tag covers the session id, the direction (client→server or server→client) and a per-direction sequence number,
  so a recorded frame fails authentication when replayed on another connection, reflected back to its sender,
  repeated or reordered.
* Frame: ``!IQ`` (header length, payload length) | header JSON | header tag | payload | frame tag. The header tag
  is checked before the payload is read, so nothing of the announced payload size (up to MAX_PAYLOAD) is
  allocated for an unauthenticated peer; the header itself is at most MAX_HEADER.
* Time: a peer has `Timeouts.frame` (plus time for the payload at MIN_RATE) to deliver a frame once it started one,
  and waiting for a frame to start is always bounded by the caller; a slow or silent peer is dropped with a message
  naming its address and what this side waited for.
* Threads: a `Connection` owns its socket, tags and counters; a frame is sent whole under its lock, so frames from
  several threads never interleave. listener.py's `Listener` caps the connections served at once.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import secrets
import select
import socket
import struct
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from tfnode.errors import TfnodeError

log = logging.getLogger(__name__)

_PREFIX = struct.Struct("!IQ")
_SEQ = struct.Struct("!Q")
_MAC_LEN = 32
_NONCE_LEN = 16
_GREETING = b"tfoy-wire/2\n"  # protocol name and version: anything else is not a peer of this code version
_LABEL = b"tfoy-frame/2\x00"
_TO_SERVER = b"c2s"
_TO_CLIENT = b"s2c"
STEP = 0.25  # every socket call waits at most this long; deadlines are enforced around the calls

MAX_HEADER = 1 << 20  # JSON only: control messages, chunk descriptions, a (truncated) traceback
MAX_PAYLOAD = 4 << 30
MIN_RATE = 1 << 20  # bytes/s a payload must at least move at, on top of the frame timeout


class AuthError(TfnodeError, ConnectionError):
    """A frame whose tag does not match (wrong secret, tampered, replayed or reordered data) or a peer that does
    not speak this protocol. The connection is closed."""


class IdleTimeout(TfnodeError, TimeoutError):
    """No frame started within the caller's wait. Unlike any other error the connection is still usable."""


@dataclass(frozen=True)
class Timeouts:
    """Bounds on what a peer may make this side wait for, in seconds.

    handshake: for the peer's greeting; frame: for the rest of a frame once its first byte arrived (the payload
    gets `size / MIN_RATE` more); send: for the peer to take a whole frame (plus `size / MIN_RATE`).
    """

    handshake: float = 10.0
    frame: float = 60.0
    send: float = 60.0


DEFAULT_TIMEOUTS = Timeouts()


def peer_name(sock: socket.socket) -> str:
    try:
        addr = sock.getpeername()
    except OSError:
        return "an unconnected socket"
    if isinstance(addr, tuple):
        return f"{addr[0]}:{addr[1]}"
    return f"local socket {addr or '(unnamed)'}"


def close_quietly(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)  # wakes threads blocked on the socket
    except OSError:
        pass
    sock.close()


def _tags(key: bytes, context: bytes, prefix: bytes, head: bytes) -> tuple[bytes, hmac.HMAC]:
    """(header tag, running HMAC to feed the payload into). Both cover context, prefix and header; the suffixes
    keep the two tags distinct (the prefix fixes every length, so the messages cannot be confused)."""
    base = hmac.new(key, context, hashlib.sha256)
    base.update(prefix)
    base.update(head)
    head_tag = base.copy()
    head_tag.update(b"head")
    base.update(b"body")
    return head_tag.digest(), base


def _as_contiguous(arr: np.ndarray) -> np.ndarray:
    if arr.dtype.hasobject:
        raise TypeError(f"cannot send an array of dtype {arr.dtype} (object arrays are never pickled)")
    return np.ascontiguousarray(arr)


def _encode(header: dict[str, Any], arrays: Sequence[np.ndarray]) -> tuple[bytes, bytes, list[memoryview | bytes]]:
    """(prefix, header JSON, payload buffers); ValueError for a frame the receiver would refuse."""
    arrays = [_as_contiguous(np.asarray(a)) for a in arrays]
    header = dict(header)
    if arrays:
        header["_arrays"] = [[a.dtype.str, list(a.shape)] for a in arrays]
    head = json.dumps(header, separators=(",", ":")).encode()
    payload_len = sum(a.nbytes for a in arrays)
    if len(head) > MAX_HEADER:
        raise ValueError(f"frame header of {len(head)} bytes exceeds MAX_HEADER ({MAX_HEADER}); send bulk data as "
                         "arrays (payload), not in the JSON header")
    if payload_len > MAX_PAYLOAD:
        raise ValueError(f"frame payload of {payload_len} bytes exceeds MAX_PAYLOAD ({MAX_PAYLOAD})")
    buffers = [memoryview(a).cast("B") if a.nbytes else b"" for a in arrays]
    return _PREFIX.pack(len(head), payload_len), head, buffers


def _decode(head: bytes, payload: bytearray, peer: str) -> tuple[dict[str, Any], list[np.ndarray]]:
    header = json.loads(head)
    if not isinstance(header, dict):
        raise ValueError(f"malformed frame from {peer}: the header is not a JSON object")
    arrays: list[np.ndarray] = []
    offset = 0
    for dtype_str, shape in header.pop("_arrays", []):
        dtype = np.dtype(dtype_str)
        if dtype.hasobject:
            raise AuthError(f"refusing object dtype {dtype_str} from {peer}")
        count = int(np.prod(shape, dtype=np.int64))
        arrays.append(np.frombuffer(payload, dtype=dtype, count=count, offset=offset).reshape(shape))
        offset += count * dtype.itemsize
    if offset != len(payload):
        raise ValueError(f"malformed frame from {peer}: arrays of {offset} bytes in a payload of {len(payload)}")
    return header, arrays


class _Stream:
    """A socket's bytes with deadlines. Why not socket timeouts: a trickling peer resets them with every byte, and a
    timeout set by one thread would change another's wait; here each call waits at most STEP and the loop keeps
    the deadline."""

    def __init__(self, sock: socket.socket) -> None:
        sock.settimeout(STEP)
        self.sock = sock
        self.peer = peer_name(sock)
        self._closed = threading.Event()

    @property
    def closed(self) -> bool:
        return self._closed.is_set()

    def close(self) -> None:
        if not self._closed.is_set():
            self._closed.set()
            close_quietly(self.sock)

    def read(self, n: int, deadline: float, what: str, *, idle: bool = False) -> bytearray:
        """Exactly n bytes by `deadline`, however the peer spreads them out (a trickle is as late as silence)."""
        buf = bytearray(n)
        view = memoryview(buf)
        got = 0
        while got < n:
            try:
                k = self.sock.recv_into(view[got:], n - got)
            except TimeoutError:
                k = None
            except OSError as e:
                raise self._broken(f"waiting for {what}", e) from e
            if k == 0:
                if self.closed:
                    raise self._broken(f"waiting for {what}")
                raise ConnectionError(f"{self.peer} closed the connection while this side waited for {what} "
                                      f"({got} of {n} bytes read)")
            got += k or 0
            if got < n and time.monotonic() >= deadline:
                if idle and got == 0:
                    raise IdleTimeout(f"nothing from {self.peer} while waiting for {what}")
                raise TimeoutError(f"{self.peer} is too slow: {got} of {n} bytes of a frame arrived in time while "
                                   f"this side waited for {what}; dropped")
        return buf

    def write(self, data: bytes | memoryview, deadline: float, what: str) -> None:
        view = memoryview(data).cast("B")
        sent = 0
        while sent < len(view):
            try:
                sent += self.sock.send(view[sent:])
            except TimeoutError:
                pass
            except OSError as e:
                raise self._broken(f"sending {what}", e) from e
            if sent < len(view) and time.monotonic() >= deadline:
                raise TimeoutError(f"{self.peer} did not take {what} in time ({sent} of {len(view)} bytes sent); "
                                   "dropped")

    def _broken(self, doing: str, error: OSError | None = None) -> ConnectionError:
        if self.closed:
            return ConnectionError(f"connection to {self.peer} closed by this side while {doing}")
        return ConnectionError(f"connection to {self.peer} failed while {doing}: {error}")


class Connection:
    """One authenticated connection: socket, secret, session id, sequence numbers and a send lock.

    Everything that writes to the socket goes through `send` (atomic per frame); `recv` is for one reader at a
    time. Any error except IdleTimeout leaves the stream out of step, so the connection closes itself.
    """

    def __init__(self, stream: _Stream, key: bytes, session: bytes, *, server: bool,
                 timeouts: Timeouts = DEFAULT_TIMEOUTS) -> None:
        self._stream = stream
        self.sock = stream.sock
        self.peer = stream.peer
        self.timeouts = timeouts
        self._key = key
        self._session = session
        self._send_label, self._recv_label = (_TO_CLIENT, _TO_SERVER) if server else (_TO_SERVER, _TO_CLIENT)
        self._send_seq = 0
        self._recv_seq = 0
        self._send_lock = threading.Lock()
        self._recv_lock = threading.Lock()

    # ---- set-up ------------------------------------------------------------------------------------------------
    @classmethod
    def handshake(cls, sock: socket.socket, key: bytes, *, server: bool,
                  timeouts: Timeouts = DEFAULT_TIMEOUTS) -> Connection:
        """Exchanges greetings and nonces on a connected socket (closed on failure). Both sides write first, so
        neither waits for the other to start."""
        stream = _Stream(sock)
        nonce = secrets.token_bytes(_NONCE_LEN)
        deadline = time.monotonic() + timeouts.handshake
        try:
            stream.write(_GREETING + nonce, deadline, "the greeting")
            theirs = bytes(stream.read(len(_GREETING) + _NONCE_LEN, deadline, "the peer's greeting (handshake)"))
        except ConnectionError as e:
            stream.close()
            raise ConnectionError(f"{e} (a peer at its connection limit or shutting down closes at once)") from e
        except BaseException:
            stream.close()
            raise
        if not hmac.compare_digest(theirs[:len(_GREETING)], _GREETING):
            stream.close()
            raise AuthError(f"{stream.peer} is not a tfoy peer of this version (unexpected greeting)")
        other = theirs[len(_GREETING):]
        session = nonce + other if server else other + nonce
        return cls(stream, key, session, server=server, timeouts=timeouts)

    @classmethod
    def connect(cls, address: tuple[str, int], key: bytes, *, timeout: float,
                timeouts: Timeouts = DEFAULT_TIMEOUTS) -> Connection:
        """Dials `address` (within `timeout`) and runs the client side of the handshake."""
        sock = socket.create_connection(address, timeout=timeout)
        return cls.handshake(sock, key, server=False, timeouts=timeouts)

    # ---- frames ------------------------------------------------------------------------------------------------
    def _context(self, label: bytes, seq: int) -> bytes:
        return _LABEL + self._session + label + _SEQ.pack(seq)

    def send(self, header: dict[str, Any], arrays: Sequence[np.ndarray] = (), timeout: float | None = None) -> None:
        """Sends one frame whole (`arrays` appended raw and described in header['_arrays']). The peer has
        `timeout` (default Timeouts.send) plus time for the payload at MIN_RATE to take it, else TimeoutError."""
        prefix, head, buffers = _encode(header, arrays)
        size = len(prefix) + len(head) + sum(len(b) for b in buffers) + 2 * _MAC_LEN
        wait = self.timeouts.send if timeout is None else timeout
        with self._send_lock:
            self._check_open()
            head_tag, body = _tags(self._key, self._context(self._send_label, self._send_seq), prefix, head)
            for buf in buffers:
                body.update(buf)
            self._send_seq += 1
            deadline = time.monotonic() + wait + size / MIN_RATE
            what = f"the {header.get('op', 'untitled')!s} frame"
            try:
                self._stream.write(prefix + head + head_tag, deadline, what)
                for buf in buffers:
                    if len(buf):
                        self._stream.write(buf, deadline, what)
                self._stream.write(body.digest(), deadline, what)
            except BaseException:
                self.close()  # a partly sent frame leaves the stream unusable
                raise

    def recv(self, timeout: float, waiting_for: str) -> tuple[dict[str, Any], list[np.ndarray]]:
        """Reads one frame, checking its header tag before the payload is read and its frame tag before anything
        is decoded. IdleTimeout if no frame starts within `timeout`; `waiting_for` names it in every error."""
        with self._recv_lock:
            self._check_open()
            try:
                return self._recv_frame(timeout, waiting_for)
            except IdleTimeout:
                raise
            except BaseException:
                self.close()
                raise

    def _recv_frame(self, timeout: float, waiting_for: str) -> tuple[dict[str, Any], list[np.ndarray]]:
        first = self._stream.read(1, time.monotonic() + timeout, waiting_for, idle=True)
        deadline = time.monotonic() + self.timeouts.frame
        prefix = bytes(first + self._stream.read(_PREFIX.size - 1, deadline, waiting_for))
        head_len, payload_len = _PREFIX.unpack(prefix)
        if head_len > MAX_HEADER or payload_len > MAX_PAYLOAD:
            raise AuthError(f"{self.peer} announced a frame of {head_len} + {payload_len} bytes (limits {MAX_HEADER}"
                            f" + {MAX_PAYLOAD}) while this side waited for {waiting_for}: not a tfoy peer")
        head = bytes(self._stream.read(head_len + _MAC_LEN, deadline, waiting_for))
        head, tag = head[:head_len], head[head_len:]
        head_tag, body = _tags(self._key, self._context(self._recv_label, self._recv_seq), prefix, head)
        if not hmac.compare_digest(tag, head_tag):
            raise AuthError(f"frame from {self.peer} failed authentication while this side waited for {waiting_for} "
                            "(wrong cluster secret, or a replayed, reordered or tampered frame)")
        payload_deadline = time.monotonic() + self.timeouts.frame + payload_len / MIN_RATE
        payload = self._stream.read(payload_len, payload_deadline, waiting_for) if payload_len else bytearray()
        body.update(payload)
        if not hmac.compare_digest(bytes(self._stream.read(_MAC_LEN, payload_deadline, waiting_for)), body.digest()):
            raise AuthError(f"frame payload from {self.peer} failed authentication while this side waited for "
                            f"{waiting_for} (tampered data)")
        self._recv_seq += 1
        return _decode(head, payload, self.peer)

    def pending(self) -> bool:
        """True when the peer sent something not read yet (or closed): lets a sender notice a reply between frames
        without blocking."""
        if self.closed:
            return True
        try:
            readable, _, _ = select.select([self.sock], [], [], 0)
        except (OSError, ValueError):
            return True
        return bool(readable)

    # ---- life ----------------------------------------------------------------------------------------------------
    @property
    def closed(self) -> bool:
        return self._stream.closed

    def _check_open(self) -> None:
        if self.closed:
            raise ConnectionError(f"connection to {self.peer} is closed")

    def close(self) -> None:
        self._stream.close()
