"""The frame format's defences, on real sockets: nothing big is allocated for a stranger, recorded frames cannot be
replayed, reflected or reordered, a trickling peer is dropped, and frames sent from several threads stay whole.

`relayed_pair` puts the test between the two ends, so it can record, drop, replay or tamper with the raw bytes.
"""

from __future__ import annotations

import json
import select
import socket
import struct
import threading
import time
import tracemalloc
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from tfnode.spark import feed, wire

KEY = b"k" * 32


def pair(client_key: bytes = KEY, server_key: bytes = KEY,
         timeouts: wire.Timeouts = wire.DEFAULT_TIMEOUTS) -> tuple[wire.Connection, wire.Connection]:
    """(client, server) connections over a socketpair, handshaken."""
    a, b = socket.socketpair()
    with ThreadPoolExecutor(1) as pool:
        server = pool.submit(wire.Connection.handshake, a, server_key, server=True, timeouts=timeouts)
        client = wire.Connection.handshake(b, client_key, server=False, timeouts=timeouts)
        return client, server.result(10)


def take(sock: socket.socket, quiet: float = 0.3) -> bytes:
    """Everything `sock` receives until it has been quiet for `quiet` seconds."""
    out = bytearray()
    while select.select([sock], [], [], quiet)[0]:
        data = sock.recv(1 << 20)
        if not data:
            break
        out += data
    return bytes(out)


class Relayed:
    """client ⇄ (to_client | test | to_server) ⇄ server: bytes pass only when the test forwards them."""

    def __init__(self, timeouts: wire.Timeouts = wire.DEFAULT_TIMEOUTS) -> None:
        client_sock, self.to_client = socket.socketpair()
        self.to_server, server_sock = socket.socketpair()
        with ThreadPoolExecutor(2) as pool:
            server = pool.submit(wire.Connection.handshake, server_sock, KEY, server=True, timeouts=timeouts)
            client = pool.submit(wire.Connection.handshake, client_sock, KEY, server=False, timeouts=timeouts)
            self.to_server.sendall(take(self.to_client))  # the client's greeting
            self.to_client.sendall(take(self.to_server))  # the server's greeting
            self.client, self.server = client.result(10), server.result(10)

    def from_client(self, header: dict) -> bytes:
        """The raw bytes of one frame the client sends (not forwarded)."""
        self.client.send(header)
        return take(self.to_client)

    def from_server(self, header: dict) -> bytes:
        self.server.send(header)
        return take(self.to_server)


# ---- 1: nothing big for an unauthenticated peer ---------------------------------------------------------------------
def test_a_forged_4_gib_frame_fails_on_its_header_tag_before_any_payload_is_read_or_allocated():
    client, server = pair()
    head = b'{"op":"chunk"}'
    forged = struct.pack("!IQ", len(head), wire.MAX_PAYLOAD) + head + b"\0" * 32  # no payload follows
    outcome: dict = {}

    def receive() -> None:
        try:
            server.recv(5, "a chunk")
        except Exception as e:  # noqa: BLE001 - the test looks at it
            outcome["error"] = e

    tracemalloc.start()
    try:
        client.sock.sendall(forged)
        receiver = threading.Thread(target=receive, daemon=True)
        receiver.start()
        receiver.join(5)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
        waited_for_payload = receiver.is_alive()
        client.close()  # unblocks a receiver that went on to wait for the payload
    assert not waited_for_payload
    assert isinstance(outcome.get("error"), wire.AuthError) and "failed authentication" in str(outcome["error"])
    assert peak < 16 << 20  # the announced payload was never allocated
    assert server.closed


def test_an_oversized_header_is_refused_from_the_prefix_alone():
    assert wire.MAX_HEADER <= 1 << 20
    client, server = pair()
    client.sock.sendall(struct.pack("!IQ", wire.MAX_HEADER + 1, 0))  # nothing follows the prefix
    started = time.monotonic()
    with pytest.raises(wire.AuthError, match="not a tfoy peer"):
        server.recv(5, "a registration")
    assert time.monotonic() - started < 2


def test_sender_refuses_a_header_the_receiver_would_refuse():
    client, _ = pair()
    with pytest.raises(ValueError, match="MAX_HEADER"):
        client.send({"op": "x", "blob": "x" * (wire.MAX_HEADER + 1)})
    assert not client.closed  # nothing was sent: the connection is still in step


def test_large_json_results_travel_in_the_payload_not_the_header():
    client, server = pair()
    results = [{"id": i, "label": "x" * 50} for i in range(40_000)]  # ~2.7 MB of JSON, more than MAX_HEADER
    conn = feed._FeedConn(server, partition=0, train_mode=False, feed_timeout=10)
    sender = threading.Thread(target=feed._send_results, args=(conn, results))
    sender.start()
    header, arrays = client.recv(10, "results")
    sender.join(10)
    assert header == {"op": "results", "n": 40_000, "json": True, "tuples": False}
    assert json.loads(bytes(arrays[0])) == results


def test_tampered_header_is_rejected():
    relay = Relayed()
    raw = bytearray(relay.from_client({"op": "register", "executor_id": 1}))
    raw[raw.index(b'"executor_id":1') + len(b'"executor_id":')] = ord("2")
    relay.to_server.sendall(raw)
    with pytest.raises(wire.AuthError, match="failed authentication"):
        relay.server.recv(5, "a registration")


# ---- 5: replay, reflection, reordering ------------------------------------------------------------------------------
def test_a_recorded_frame_replayed_on_a_new_connection_fails_authentication():
    first = Relayed()
    recorded = first.from_client({"op": "register", "executor_id": 0})
    first.to_server.sendall(recorded)
    assert first.server.recv(5, "a registration")[0]["executor_id"] == 0  # genuine on its own connection
    second = Relayed()
    second.to_server.sendall(recorded)
    with pytest.raises(wire.AuthError, match="replayed"):
        second.server.recv(5, "a registration")


def test_a_frame_replayed_on_its_own_connection_fails_authentication():
    relay = Relayed()
    recorded = relay.from_server({"op": "stop"})
    relay.to_client.sendall(recorded + recorded)
    assert relay.client.recv(5, "a control message")[0] == {"op": "stop"}
    with pytest.raises(wire.AuthError, match="replayed"):
        relay.client.recv(5, "a control message")


def test_reordered_frames_fail_authentication():
    relay = Relayed()
    first = relay.from_client({"op": "chunk", "n": 1})
    second = relay.from_client({"op": "end"})
    relay.to_server.sendall(second + first)
    with pytest.raises(wire.AuthError, match="reordered"):
        relay.server.recv(5, "a chunk")


def test_a_frame_reflected_back_to_its_sender_fails_authentication():
    relay = Relayed()
    recorded = relay.from_client({"op": "done"})  # the client's frame 0, sent back as if the server's frame 0
    relay.to_client.sendall(recorded)
    with pytest.raises(wire.AuthError):
        relay.client.recv(5, "a control message")


# ---- 3: slow and silent peers ---------------------------------------------------------------------------------------
def test_a_trickling_peer_is_dropped_naming_it_and_what_was_awaited():
    client, server = pair(timeouts=wire.Timeouts(frame=1.0))
    stop = threading.Event()

    def trickle():  # a byte every 0.2 s: each recv call gets something, the frame never completes
        for byte in struct.pack("!IQ", 100, 0) + b"x" * 100:
            if stop.wait(0.2):
                return
            try:
                client.sock.send(bytes([byte]))
            except OSError:
                return

    threading.Thread(target=trickle, daemon=True).start()
    started = time.monotonic()
    with pytest.raises(TimeoutError, match=r"too slow.*waited for a registration") as info:
        server.recv(30, "a registration")
    stop.set()
    assert time.monotonic() - started < 3
    assert server.peer in str(info.value)
    assert server.closed


def test_a_silent_peer_times_out_and_the_connection_stays_usable():
    client, server = pair()
    with pytest.raises(wire.IdleTimeout, match="waiting for the cluster spec"):
        server.recv(0.3, "the cluster spec")
    client.send({"op": "cluster"})
    assert server.recv(5, "the cluster spec")[0] == {"op": "cluster"}


def test_a_stranger_that_never_greets_is_dropped_after_the_handshake_timeout():
    a, b = socket.socketpair()
    started = time.monotonic()
    with pytest.raises(TimeoutError, match="greeting"):
        wire.Connection.handshake(a, KEY, server=True, timeouts=wire.Timeouts(handshake=0.5))
    assert time.monotonic() - started < 2
    assert b.recv(64) and b.recv(64) == b""  # got the server's greeting, then the close


# ---- 6: frames from several threads stay whole ---------------------------------------------------------------------
def test_frames_sent_concurrently_on_one_connection_never_interleave():
    client, server = pair()
    frames_per_thread, threads = 20, 4
    block = np.arange(300_000, dtype=np.int64)  # 2.4 MB: every send takes many socket writes

    def sender(tid: int) -> None:
        for i in range(frames_per_thread):
            client.send({"op": "chunk", "tid": tid, "i": i}, [block + tid])

    workers = [threading.Thread(target=sender, args=(t,)) for t in range(threads)]
    for w in workers:
        w.start()
    seen: dict[int, list[int]] = {t: [] for t in range(threads)}
    for _ in range(frames_per_thread * threads):
        header, (arr,) = server.recv(30, "a chunk")
        assert np.array_equal(arr, block + header["tid"])
        seen[header["tid"]].append(header["i"])
    for w in workers:
        w.join(10)
    assert all(v == list(range(frames_per_thread)) for v in seen.values())
