"""The reservation server and the feed as a stranger or a stuck peer meets them, on real localhost sockets:
connections are capped, slow and silent peers are dropped naming who and what was awaited, and every wait of the
feed ends with a message saying what it waited for."""

from __future__ import annotations

import json
import logging
import socket
import threading
import time

import numpy as np
import pytest

from tfnode.spark import feed, feeder, wire
from tfnode.spark.listener import Listener
from tfnode.spark.reservation import ReservationClient, ReservationServer, Slot, connection_limit

KEY = b"k" * 32


def _wait_for(condition, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return condition()


def _dial(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    sock.settimeout(5)
    return sock


def _logged(caplog, *words: str) -> bool:
    return any(all(w in r.getMessage() for w in words) for r in caplog.records)


def _register_in_background(client: ReservationClient, executor_id: int) -> dict:
    """Registers in a thread; the returned dict gets the cluster spec or the error."""
    out: dict = {}

    def run() -> None:
        try:
            out["spec"] = client.register({"executor_id": executor_id, "host": "h", "port": 1000 + executor_id}, 30)
        except Exception as e:  # noqa: BLE001 - the test looks at it
            out["error"] = e

    threading.Thread(target=run, daemon=True).start()
    return out


# ---- 2: connection caps ---------------------------------------------------------------------------------------------
def test_default_connection_limit_follows_the_number_of_nodes():
    assert connection_limit(2) == 10 and connection_limit(100) == 125
    server = ReservationServer([Slot(i, "worker", i) for i in range(3)], KEY, host="127.0.0.1")
    assert server.max_connections == connection_limit(3)
    server.close()


def test_reservation_server_refuses_connections_beyond_its_limit(caplog):
    caplog.set_level(logging.WARNING)
    server = ReservationServer([Slot(0, "worker", 0)], KEY, host="127.0.0.1", max_connections=2)
    port = server.address[1]
    held = [_dial(port) for _ in range(2)]
    for sock in held:
        assert sock.recv(64).startswith(b"tfoy")  # served: the server's greeting
    extra = _dial(port)
    assert extra.recv(64) == b""  # closed at once, no greeting
    assert _logged(caplog, "refused a connection from 127.0.0.1:", "2 connections open")
    held[0].close()  # a slot frees up when a connection ends
    assert _wait_for(lambda: _dial_served(port))
    server.close()


def _dial_served(port: int) -> bool:
    with _dial(port) as sock:
        return sock.recv(64).startswith(b"tfoy")


def test_feed_refuses_connections_beyond_its_limit(caplog, tmp_path):
    caplog.set_level(logging.WARNING)
    node_feed = feed.NodeFeed(KEY, capacity=2, max_connections=1)
    first = wire.Connection.connect(("127.0.0.1", node_feed.port), KEY, timeout=5)
    with pytest.raises(ConnectionError):
        wire.Connection.connect(("127.0.0.1", node_feed.port), KEY, timeout=5)
    assert _logged(caplog, "tfoy-feed", "refused a connection from 127.0.0.1:")
    first.close()
    node_feed.close()


# ---- 3: slow and silent peers at the servers ------------------------------------------------------------------------
def test_reservation_drops_a_silent_stranger_naming_its_address(caplog):
    caplog.set_level(logging.WARNING)
    server = ReservationServer([Slot(0, "worker", 0)], KEY, host="127.0.0.1",
                               timeouts=wire.Timeouts(handshake=0.5))
    sock = _dial(server.address[1])
    local = "{}:{}".format(*sock.getsockname())
    started = time.monotonic()
    assert sock.recv(64).startswith(b"tfoy")
    assert sock.recv(64) == b""  # dropped
    assert time.monotonic() - started < 3
    assert _wait_for(lambda: _logged(caplog, local, "greeting"))
    server.close()


def test_reservation_drops_a_peer_trickling_its_registration(caplog):
    caplog.set_level(logging.WARNING)
    server = ReservationServer([Slot(0, "worker", 0)], KEY, host="127.0.0.1", timeouts=wire.Timeouts(frame=1.0))
    conn = wire.Connection.connect(server.address, KEY, timeout=5)
    local = "{}:{}".format(*conn.sock.getsockname())
    started = time.monotonic()
    try:
        for _ in range(50):  # a prefix byte every 0.2 s, never a whole frame
            conn.sock.send(b"\0")
            time.sleep(0.2)
    except OSError:
        pass  # the server closed the connection
    assert time.monotonic() - started < 5
    assert _wait_for(lambda: _logged(caplog, local, "too slow", "a registration"))
    assert server.nodes == {}
    server.close()


def test_a_registered_node_that_falls_silent_is_dropped_as_gone(caplog):
    caplog.set_level(logging.WARNING)
    server = ReservationServer([Slot(0, "worker", 0), Slot(1, "worker", 1)], KEY, host="127.0.0.1",
                               heartbeat=0.2, idle_timeout=1.0)
    silent = wire.Connection.connect(server.address, KEY, timeout=5)  # registers, then never sends again
    silent.send({"op": "register", "executor_id": 0, "host": "h", "port": 1000})
    alive = ReservationClient(server.address, KEY, heartbeat=0.2, idle_timeout=1.0)
    registered = _register_in_background(alive, 1)
    assert _wait_for(lambda: "spec" in registered)
    assert _wait_for(lambda: server.nodes[0].status == "gone", 5)
    assert _logged(caplog, "a report or heartbeat from executor 0 (worker:0)", "dropping the node")
    time.sleep(1.5)
    assert server.nodes[1].status == "running"  # its heartbeats keep it
    alive.close()
    server.close()


def test_a_node_whose_driver_falls_silent_counts_it_as_lost():
    listener = Listener("127.0.0.1", KEY, lambda conn: time.sleep(30), max_connections=2, name="mute-driver")
    client = ReservationClient(("127.0.0.1", listener.port), KEY, heartbeat=0.2, idle_timeout=1.0)
    lost = threading.Event()
    started = time.monotonic()
    client.listen(lambda msg: None, lost.set)
    assert lost.wait(5) and time.monotonic() - started < 3
    listener.close()


def test_oversized_failure_report_is_cut_to_fit_a_frame():
    server = ReservationServer([Slot(0, "worker", 0), Slot(1, "worker", 1)], KEY, host="127.0.0.1")
    client = ReservationClient(server.address, KEY)
    _register_in_background(client, 0)
    assert _wait_for(lambda: 0 in server.nodes)
    client.send({"op": "failed", "traceback": "\u00e9" * (2 * wire.MAX_HEADER) + "ValueError: the end"})
    assert _wait_for(lambda: server.nodes[0].status == "failed")
    assert server.nodes[0].traceback.endswith("ValueError: the end")
    assert "characters cut" in server.nodes[0].traceback
    server.close()


# ---- 4: every wait of the feed is bounded ---------------------------------------------------------------------------
@pytest.fixture
def feed_dir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    folder = feeder.state_dir("c1")
    folder.mkdir(parents=True)
    return folder


def _publish(folder, node_feed: feed.NodeFeed) -> None:
    (folder / "node.json").write_text(json.dumps({"executor_id": 0, "job_name": "worker", "task_index": 0,
                                                  "feed_port": node_feed.port}))


def test_feed_drops_a_feeding_task_that_falls_silent(caplog):
    caplog.set_level(logging.WARNING)
    node_feed = feed.NodeFeed(KEY)
    conn = wire.Connection.connect(("127.0.0.1", node_feed.port), KEY, timeout=5)
    conn.send({"op": "hello", "partition": 3, "mode": "train", "timeout": 0.5})
    started = time.monotonic()
    with pytest.raises(ConnectionError, match="closed the connection"):
        conn.recv(10, "the feed to drop this silent task")
    assert time.monotonic() - started < 3
    assert _logged(caplog, "the next chunk of partition 3")
    node_feed.close()


def test_feed_gives_up_on_a_full_buffer_nobody_drains(caplog, feed_dir):
    caplog.set_level(logging.WARNING)
    node_feed = feed.NodeFeed(KEY, capacity=1)
    _publish(feed_dir, node_feed)
    target = feeder.FeedTarget("c1", KEY, feed_timeout=0.5, chunk_records=10)
    with pytest.raises(TimeoutError, match=r"partition 4: .*feed_timeout"):
        feeder.feed_partition(target, 4, iter([([1] * 4, i) for i in range(100)]))
    assert _wait_for(lambda: _logged(caplog, "partition 4: the TF process took no data", "stayed full"), 5)
    node_feed.close()


def test_data_feed_wait_for_data_is_bounded_and_says_what_it_waited_for():
    node_feed = feed.NodeFeed(KEY)
    df = feed.DataFeed(node_feed, timeout=0.5)
    started = time.monotonic()
    with pytest.raises(TimeoutError, match=r"no data from Spark for 0.5s while waiting for the next batch"):
        df.next_batch(8)
    assert time.monotonic() - started < 2
    node_feed.close()


def test_inference_feeder_returns_promptly_when_the_tf_node_terminates(feed_dir):
    node_feed = feed.NodeFeed(KEY, capacity=2)
    _publish(feed_dir, node_feed)
    target = feeder.FeedTarget("c1", KEY, feed_timeout=30, chunk_records=100)
    endless = (np.zeros(10_000, np.float32) for _ in iter(int, 1))  # the sender never runs out
    out: dict = {}

    def run() -> None:
        out["results"] = list(feeder.infer_partition(target, 0, endless))

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    df = feed.DataFeed(node_feed, train_mode=False, timeout=10)
    batch = df.next_batch(50)
    df.batch_results([0] * len(batch))
    time.sleep(0.5)  # the sender fills the buffer and the socket, then blocks
    started = time.monotonic()
    df.terminate()
    thread.join(10)
    assert not thread.is_alive() and time.monotonic() - started < 5  # not feed_timeout
    assert out["results"] == [0] * 50
    node_feed.close()
