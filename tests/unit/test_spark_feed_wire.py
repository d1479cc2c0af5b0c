"""Unit tests of the Spark-mode building blocks: authenticated frames, reservation timeouts, chunking, DataFeed."""

from __future__ import annotations

import json
import socket
import threading
import time

import numpy as np
import pytest

from tests.unit.test_wire_frames import Relayed, pair, take
from tfnode.spark import columns, feed, feeder, wire
from tfnode.spark.cluster import assign_roles
from tfnode.spark.reservation import ReservationClient, ReservationServer, Slot, host_address

KEY = b"k" * 32


def test_frame_round_trip_with_arrays():
    client, server = pair()
    arrays = [np.arange(12, dtype=np.int64).reshape(3, 4), np.array(["x", "yz"]), np.zeros((0, 5), np.float32)]
    client.send({"op": "chunk", "n": 3}, arrays)
    header, got = server.recv(5, "a chunk")
    assert header == {"op": "chunk", "n": 3}
    for x, y in zip(arrays, got, strict=True):
        assert x.dtype == y.dtype and np.array_equal(x, y)
    server.send({"op": "reply"})
    assert client.recv(5, "a reply") == ({"op": "reply"}, [])


def test_frame_with_wrong_secret_is_rejected_before_decoding():
    client, server = pair(client_key=b"other-secret")
    client.send({"op": "register"})
    with pytest.raises(wire.AuthError, match="authentication"):
        server.recv(5, "a registration")
    assert server.closed


def test_tampered_payload_is_rejected():
    relay = Relayed()
    relay.client.send({"op": "x"}, [np.arange(4)])
    raw = bytearray(take(relay.to_client))
    raw[-40] ^= 1  # a payload byte
    relay.to_server.sendall(raw)
    with pytest.raises(wire.AuthError, match="payload"):
        relay.server.recv(5, "a chunk")


def test_object_arrays_are_never_sent():
    client, _ = pair()
    with pytest.raises(TypeError, match="object"):
        client.send({}, [np.array([{"a": 1}], dtype=object)])


def test_host_address_needs_no_internet(monkeypatch):
    monkeypatch.delenv("TFOY_HOST", raising=False)
    monkeypatch.delenv("SPARK_LOCAL_IP", raising=False)
    assert socket.inet_aton(host_address())
    monkeypatch.setenv("TFOY_HOST", "10.1.2.3")
    assert host_address() == "10.1.2.3"


def test_reservation_completes_and_hands_out_the_cluster_spec():
    slots = assign_roles(2, 0, "chief", False)
    server = ReservationServer(slots, KEY, host="127.0.0.1")
    specs = {}

    def node(eid):
        client = ReservationClient(server.address, KEY)
        specs[eid] = client.register({"executor_id": eid, "host": "h", "port": 1000 + eid}, timeout=10)

    threads = [threading.Thread(target=node, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    assert server.await_reservations(10) == {"chief": ["h:1000"], "worker": ["h:1001"]}
    for t in threads:
        t.join(10)
    assert specs[0] == specs[1] == {"chief": ["h:1000"], "worker": ["h:1001"]}
    server.close()


def test_reservation_timeout_names_registered_and_missing_on_both_sides():
    server = ReservationServer([Slot(0, "worker", 0), Slot(1, "worker", 1), Slot(2, "worker", 2)], KEY,
                               host="127.0.0.1")
    errors = {}

    def node():
        client = ReservationClient(server.address, KEY)
        try:
            client.register({"executor_id": 1, "host": "h", "port": 1}, timeout=30)
        except Exception as e:  # noqa: BLE001
            errors["node"] = e

    t = threading.Thread(target=node)
    t.start()
    with pytest.raises(TimeoutError) as info:
        server.await_reservations(3)
    t.join(10)
    assert "1 of 3 nodes registered (executor 1 (worker:1))" in str(info.value)
    assert "missing: executor 0 (worker:0), executor 2 (worker:2)" in str(info.value)
    assert "missing: executor 0 (worker:0), executor 2 (worker:2)" in str(errors["node"])
    server.close()


def test_client_side_timeout_reports_the_drivers_last_progress_note():
    server = ReservationServer([Slot(0, "worker", 0), Slot(1, "worker", 1)], KEY, host="127.0.0.1")
    waiter = threading.Thread(target=lambda: pytest.raises(TimeoutError, server.await_reservations, 6))
    waiter.start()
    client = ReservationClient(server.address, KEY)
    with pytest.raises(TimeoutError, match=r"1 of 2 nodes registered .*missing: executor 1 \(worker:1\)"):
        client.register({"executor_id": 0, "host": "h", "port": 1}, timeout=3)
    waiter.join(10)
    server.close()


def test_unauthenticated_registration_is_dropped():
    server = ReservationServer([Slot(0, "worker", 0)], KEY, host="127.0.0.1")
    intruder = ReservationClient(server.address, b"wrong" * 7)
    intruder.send({"op": "register", "executor_id": 0, "host": "evil", "port": 1})
    time.sleep(0.5)
    assert server.nodes == {}
    server.close()


def test_assign_roles_follows_tfos_order():
    slots = assign_roles(5, 1, "chief", True)
    assert [(s.job_name, s.task_index) for s in slots] == [
        ("ps", 0), ("chief", 0), ("evaluator", 0), ("worker", 0), ("worker", 1)]
    with pytest.raises(ValueError):
        assign_roles(1, 1, None, False)


def test_records_to_columns_narrows_small_ints_and_names_bad_partition():
    cols, tuple_mode, narrow = columns.records_to_columns([([1, 2, 255], 0), ([3, 4, 5], 1)], partition=7)
    assert tuple_mode and narrow == [0] and cols[0].dtype == np.uint8 and cols[1].tolist() == [0, 1]
    cols, _, narrow = columns.records_to_columns([[1, 2, 300], [3, 4, 5]], partition=7)
    assert narrow == [] and cols[0].dtype == np.int64
    with pytest.raises(ValueError, match=r"partition 7: field 0 of record 1 has shape \(2,\)"):
        columns.records_to_columns([([1, 2, 3], 0), ([1, 2], 0)], partition=7)
    with pytest.raises(ValueError, match="partition 3: record 1 is"):
        columns.records_to_columns([(1, 2), (1,)], partition=3)
    with pytest.raises(ValueError, match="partition 4"):
        columns.records_to_columns([1.0, None], partition=4)


def test_bytes_and_str_columns_keep_trailing_nuls_through_the_wire():
    """numpy's S/U arrays strip trailing NULs; a serialized tf.Example or raw pixels may end in one."""
    import pyarrow as pa

    records = [(b"ab\x00", "x\x00", bytearray(b"\x00\x00")), (b"abcd", "y", bytearray(b"z"))]
    cols, tuple_mode, _ = columns.records_to_columns(records, partition=0)
    arrays, exact = columns.to_wire(cols)
    assert all(a.dtype != object for a in arrays) and len(exact) == 3
    back = columns.from_wire([np.frombuffer(a.tobytes(), a.dtype).reshape(a.shape) for a in arrays], [], exact)
    assert columns.columns_to_rows(back, tuple_mode) == [(b"ab\x00", "x\x00", b"\x00\x00"), (b"abcd", "y", b"z")]
    batch = pa.record_batch({"raw": pa.array([b"\x01\x00", b""], pa.binary()), "s": ["a\x00", "b"]})
    arrays, exact = columns.to_wire(columns.arrow_columns(batch, ["raw", "s"], partition=0))
    assert [list(c) for c in columns.from_wire(arrays, [], exact)] == [[b"\x01\x00", b""], ["a\x00", "b"]]


@pytest.fixture
def node_feed(tmp_path, monkeypatch):
    """A NodeFeed as the TF process would run it, with its node.json where feeding tasks look."""
    monkeypatch.chdir(tmp_path)
    nf = feed.NodeFeed(KEY, capacity=2)
    folder = feeder.state_dir("c1")
    folder.mkdir(parents=True)
    (folder / "node.json").write_text(json.dumps({"executor_id": 0, "job_name": "worker", "task_index": 0,
                                                  "feed_port": nf.port}))
    yield nf
    nf.close()


def test_inference_with_uneven_batches_returns_every_result(node_feed):
    target = feeder.FeedTarget("c1", KEY, feed_timeout=30, chunk_records=7)
    out = {}
    t = threading.Thread(target=lambda: out.setdefault("r", list(feeder.infer_partition(target, 0, iter(
        [[i, i] for i in range(101)])))))
    t.start()
    df = feed.DataFeed(node_feed, train_mode=False)
    sizes = []
    while t.is_alive() or not node_feed.queue.empty():
        batch = df.next_batch(10)
        if len(batch):
            sizes.append(len(batch))
            df.batch_results([int(r[0]) * 2 for r in batch])
        t.join(0.01)
    assert out["r"] == [2 * i for i in range(101)]
    assert sum(sizes) == 101 and max(sizes) <= 10


@pytest.mark.parametrize("results", [
    [(1, "cat"), (2, "dog")],            # np.asarray would make the labels strings
    [(3, 0.9), (4, 0.1)],                # ... and these ints floats
    [(np.int64(5), np.float32(0.5))],    # numpy values come back as Python's
    [1, 2.5, "x", None, {"k": [1, 2]}],  # mixed: JSON, values unchanged
    [np.array([1.0, 2.0]), np.array([3.0, 4.0])],
    [(1, [0.1, 0.2]), (2, [0.3])],       # tuples with ragged lists: JSON, tuples kept
    [2**70, 1],                          # beyond int64
])
def test_inference_results_come_back_as_they_were_passed(node_feed, results):
    """TFoS returns what map_fun passed to batch_results (pickled); tfoy sends arrays or JSON, and must not
    change a value or a tuple on the way."""
    target = feeder.FeedTarget("c1", KEY, feed_timeout=30)
    out = {}
    t = threading.Thread(target=lambda: out.setdefault("r", list(feeder.infer_partition(
        target, 0, iter(range(len(results)))))))
    t.start()
    df = feed.DataFeed(node_feed, train_mode=False)
    got = 0
    while got < len(results):
        got += len(batch := df.next_batch(len(results)))
        if len(batch):
            df.batch_results(results[got - len(batch):got])
    t.join(30)
    expected = [tuple(columns._jsonable(v) for v in r) if type(r) is tuple else columns._jsonable(r)
                for r in results]
    assert out["r"] == expected
    assert [type(v) for v in out["r"]] == [type(v) for v in expected]
    if type(results[0]) is tuple and type(results[0][0]) is not np.int64:
        assert [type(v) for r in out["r"] for v in r] == [type(v) for r in results for v in r]


def test_training_feed_is_bounded_and_ends(node_feed):
    target = feeder.FeedTarget("c1", KEY, feed_timeout=30, chunk_records=10)
    sent = {}
    t = threading.Thread(target=lambda: sent.setdefault("n", feeder.feed_partition(
        target, 0, iter([([1] * 4, i) for i in range(200)]))))
    t.start()
    time.sleep(0.5)
    assert t.is_alive() and node_feed.queue.full()  # back-pressure: 2 chunks buffered, the feeder waits
    df = feed.DataFeed(node_feed)
    got = []
    while len(got) < 192:
        got += df.next_batch(64)
    t.join(10)
    node_feed.end_of_feed.set()  # what train() sends when its job is done: the short last batch comes out
    got += df.next_batch(64)
    assert sent["n"] == 200 and [int(label) for _, label in got] == list(range(200))
    assert df.next_batch(64) == [] and df.should_stop()


def test_feeder_fails_at_once_with_the_tf_traceback(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    server = socket.create_server(("127.0.0.1", 0))
    target = feeder.FeedTarget("c2", KEY, feed_timeout=600, chunk_records=10)
    target.state_dir.mkdir(parents=True)
    (target.state_dir / "node.json").write_text(json.dumps({"executor_id": 0, "job_name": "worker",
                                                            "task_index": 0, "feed_port": server.getsockname()[1]}))

    def dying_tf_process():  # takes two chunks, leaves its traceback, dies (its socket closes)
        sock, _ = server.accept()
        conn = wire.Connection.handshake(sock, KEY, server=True)
        for _ in range(3):
            conn.recv(10, "a chunk")
        (target.state_dir / "error.txt").write_text("Traceback ...\nValueError: tf exploded")
        conn.close()

    threading.Thread(target=dying_tf_process, daemon=True).start()
    started = time.monotonic()
    with pytest.raises(RuntimeError, match="(?s)died.*tf exploded"):
        feeder.feed_partition(target, 5, iter([([1] * 4, i) for i in range(100_000)]))
    assert time.monotonic() - started < 15
    server.close()


def test_a_partition_on_an_executor_without_a_feed_goes_to_a_feeding_node_elsewhere(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    feeds = (feeder.FeedAddress("10.0.0.2", 4001, "executor 1 (worker:0)"),
             feeder.FeedAddress("10.0.0.3", 4002, "executor 2 (worker:1)"))
    target = feeder.FeedTarget("c1", b"k" * 32, 60.0, feeds=feeds)
    assert feeder.feed_address(target, 5) == ("10.0.0.3", 4002)  # no node here at all: partition modulo feeders
    target.state_dir.mkdir(parents=True)
    (target.state_dir / "node.json").write_text(json.dumps(
        {"executor_id": 0, "job_name": "ps", "task_index": 0, "feed_port": None}))
    assert feeder.feed_address(target, 4) == ("10.0.0.2", 4001)  # a ps here
    assert "worker:0" in str(target.failure(ConnectionResetError("gone"), 4))  # names the node it went to
    (target.state_dir / "node.json").write_text(json.dumps(
        {"executor_id": 0, "job_name": "worker", "task_index": 2, "feed_port": 4555, "feed_host": "10.0.0.1"}))
    assert feeder.feed_address(target, 4) == ("10.0.0.1", 4555)  # a feeding node here: always that one
    alone = feeder.FeedTarget("c2", b"k" * 32, 60.0)
    with pytest.raises(RuntimeError, match=r"partition 3: this executor runs no tfoy TF node .* no node elsewhere"):
        feeder.feed_address(alone, 3)


def test_serialized_records_ending_in_nul_arrive_whole(node_feed):
    """A record of bytes (as TFoS feeds serialized tf.Examples) through a feeding task and DataFeed."""
    target = feeder.FeedTarget("c1", KEY, feed_timeout=30, chunk_records=3)
    records = [bytes([i, 0, 0][: 1 + i % 3]) for i in range(10)]
    t = threading.Thread(target=feeder.feed_partition, args=(target, 0, iter(records)))
    t.start()
    df = feed.DataFeed(node_feed)
    got = []
    while len(got) < 9:
        got += df.next_batch(3)
    t.join(10)
    node_feed.end_of_feed.set()
    got += df.next_batch(3)
    assert got == records and all(type(r) is bytes for r in got)


@pytest.mark.parametrize("size", [0, -3, 2.5, True, "10"])
def test_a_batch_size_that_cannot_consume_is_refused(node_feed, size):
    """The defect: next_batch(0) returned [] without consuming, so a TFoS `while not feed.should_stop()` loop spun
    (4 million iterations in 2 s) until the feeders' feed_timeout, which then blamed TF for taking no data."""
    df = feed.DataFeed(node_feed)
    with pytest.raises(ValueError, match=f"DataFeed: batch_size must be a whole number >= 1, got {size!r}"):
        df.next_batch(size)
    with pytest.raises(ValueError, match="DataFeed: batch_size must be"):
        df.dataset(size)


@pytest.mark.parametrize("timeout", [None, 0, -1, "60"])
def test_a_data_feed_timeout_is_a_positive_number(node_feed, timeout):
    with pytest.raises(ValueError, match=f"DataFeed: timeout must be a positive number of seconds, got {timeout!r}"):
        feed.DataFeed(node_feed, timeout=timeout)


def test_two_columns_mapped_to_one_tensor_are_refused():
    """The defect: {"a": "x", "b": "x"} fed both, and the task's feed dict (keyed by tensor) kept only b."""
    from types import SimpleNamespace

    from tfnode.spark.cluster import feed_columns

    df = SimpleNamespace(columns=["a", "b", "c"])
    assert feed_columns(df, {"b": "y", "a": "x"}) == ["a", "b"]
    with pytest.raises(ValueError, match="input_mapping: columns 'a' and 'b' both map to tensor 'x'"):
        feed_columns(df, {"a": "x", "b": "x:0"})
