"""The start-up barrier at scale, on an in-memory stand-in for skein's key-value store.

Many tasks claiming slots at once used to try every index from 0, ~N²/2 transactions in all (32k for 256 tasks,
15 s against a real AM: benchmarks/barrier_scale.py); claim_slot now lists the taken slots and spreads over the
free ones. These tests pin that it stays O(N), and that restarts still find the slot their container left.
"""

from __future__ import annotations

import random
import threading
from collections import Counter
from collections.abc import Callable

import pytest
import skein

from tfnode.cluster_spec import build_cluster_spec
from tfnode.contract import addr_key
from tfnode.yarn import barrier as kvb


class FakeKV:
    """The part of skein's KeyValueStore tfnode.yarn.barrier uses, thread-safe, counting calls."""

    def __init__(self, on_call: Callable[[], None] | None = None):
        self.data: dict[str, bytes] = {}
        self.owners: dict[str, str] = {}
        self.calls: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._on_call = on_call or (lambda: None)

    def _count(self, name: str) -> None:
        with self._lock:
            self.calls[name] += 1
        self._on_call()

    def get(self, key: str, default: bytes | None = None) -> bytes | None:
        self._count("get")
        with self._lock:
            return self.data.get(key, default)

    def put(self, key: str, value: bytes, owner: str | None = None) -> None:
        self._count("put")
        with self._lock:
            self.data[key] = value

    def get_prefix(self, prefix: str) -> dict[str, bytes]:
        self._count("get_prefix")
        with self._lock:
            return {k: v for k, v in sorted(self.data.items()) if k.startswith(prefix)}

    def transaction(self, conditions=(), on_success=(), on_failure=()):
        self._count("transaction")
        with self._lock:
            ok = all(isinstance(c, skein.kv.missing) and c.key not in self.data for c in conditions)
            results = []
            for op in on_success if ok else on_failure:  # in order, as skein's AM applies them
                if isinstance(op, skein.kv.put):
                    self.data[op.key] = op.value
                    self.owners[op.key] = op.owner
                    results.append(None)
                elif isinstance(op, skein.kv.get):
                    results.append(self.data.get(op.key, op.default))
                elif isinstance(op, skein.kv.get_prefix):
                    results.append({k: v for k, v in sorted(self.data.items()) if k.startswith(op.prefix)})
                else:
                    raise AssertionError(f"FakeKV: unsupported {op!r}")
            return skein.kv.TransactionResult(ok, results)

    def release(self, container_id: str) -> None:
        """What the AM does when a container exits: its owned keys vanish."""
        with self._lock:
            for key in [k for k, o in self.owners.items() if o == container_id]:
                del self.data[key], self.owners[key]


def claim_all(kv: FakeKV, n: int, container_ids: list[str]) -> list[kvb.Slot]:
    start = threading.Barrier(n)
    slots: list[kvb.Slot] = []

    def task(cid: str) -> None:
        start.wait()
        slots.append(kvb.claim_slot(kv, "worker", n, cid, timeout=30))

    threads = [threading.Thread(target=task, args=(cid,)) for cid in container_ids]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return slots


def yield_gil() -> None:
    threading.Event().wait(0)  # let other threads in between KV calls, as network round trips would


@pytest.mark.parametrize("shared_id", [False, True], ids=["own-containers", "one-container"])
def test_concurrent_claims_take_distinct_slots_in_linear_transactions(shared_id):
    n = 256
    kv = FakeKV(on_call=yield_gil)
    cids = ["bench_0"] * n if shared_id else [f"worker_{i}" for i in range(n)]
    slots = claim_all(kv, n, cids)
    assert sorted(s.index for s in slots) == list(range(n))
    assert not any(s.restarted for s in slots)
    # trying every index from 0 cost ~n²/2 = 32k transactions; spread over the free slots it is a few per task
    assert kv.calls["transaction"] <= 8 * n, kv.calls
    assert kv.calls["get_prefix"] <= 8 * n, kv.calls
    if not shared_id:
        assert kv.calls["transaction"] == n  # worker_i takes index i at the first try


def test_own_instance_number_first_then_the_free_ones():
    assert kvb.slot_candidates(set(), 4, "worker_2", random.Random(0))[0] == 2
    order = kvb.slot_candidates({2}, 4, "worker_2", random.Random(0))
    assert sorted(order) == [0, 1, 3]
    assert kvb.slot_candidates({0, 1}, 3, "worker_7") == [2]  # a restarted container's id is past the instances
    assert sorted(kvb.slot_candidates(set(), 3, "no-instance-number")) == [0, 1, 2]
    assert kvb.slot_candidates({0, 1, 2}, 3, "worker_0") == []


def test_restarted_container_finds_the_slot_its_predecessor_left():
    kv = FakeKV()
    for i in range(3):
        assert kvb.claim_slot(kv, "worker", 3, f"worker_{i}").index == i
    kv.release("worker_1")
    slot = kvb.claim_slot(kv, "worker", 3, "worker_3")  # skein numbers the replacement container past the others
    assert (slot.index, slot.restarted) == (1, True)


def test_claim_times_out_while_every_slot_is_held(monkeypatch):
    monkeypatch.setattr(kvb, "POLL_S", 0.01)
    kv = FakeKV()
    kvb.claim_slot(kv, "chief", 1, "chief_0")
    with pytest.raises(TimeoutError, match="no free chief slot of 1"):
        kvb.claim_slot(kv, "chief", 1, "chief_1", timeout=0.05)


def test_roles_do_not_see_each_others_slots():
    kv = FakeKV()
    assert kvb.claim_slot(kv, "worker", 2, "worker_1").index == 1
    assert kvb.claim_slot(kv, "ps", 1, "ps_0").index == 0
    assert kvb.claim_slot(kv, "worker", 2, "worker_0").index == 0


def test_wait_for_peers_polls_with_one_kv_call(monkeypatch):
    monkeypatch.setattr(kvb, "POLL_S", 0.01)
    kv = FakeKV()
    roles = {"chief": 1, "worker": 2}
    kv.put(addr_key(0, "chief", 0), b"h:1")
    kv.put(addr_key(0, "worker", 0), b"h:2")
    polls = 0

    def arrive() -> None:
        nonlocal polls
        polls += 1
        if polls == 3:
            kv.put(addr_key(0, "worker", 1), b"h:3")

    kv.calls.clear()
    addrs = kvb.wait_for_peers(kv, 0, roles, timeout=10, on_poll=arrive)
    assert addrs == {("chief", 0): "h:1", ("worker", 0): "h:2", ("worker", 1): "h:3"}
    assert kv.calls == Counter(transaction=4, put=1)  # 4 polls, each one call (addresses and generation at once)


def test_poll_interval_bounds_the_polls_all_tasks_send_together():
    assert kvb.barrier_poll_interval(3) == kvb.POLL_S  # small jobs poll as before
    for n in (1, 16, 64, 100, 256, 1000):
        assert kvb.barrier_poll_interval(n) >= kvb.POLL_S
        assert n / kvb.barrier_poll_interval(n) <= kvb.BARRIER_POLLS_PER_S + 1e-9
    assert kvb.barrier_poll_interval(256) <= 1  # the last task's address is seen within about a second


def test_wait_for_peers_still_sees_restarts_and_names_missing_tasks(monkeypatch):
    monkeypatch.setattr(kvb, "POLL_S", 0.01)
    kv = FakeKV()
    kv.put(addr_key(0, "chief", 0), b"h:1")
    with pytest.raises(kvb.BarrierTimeout, match="worker:1"):
        kvb.wait_for_peers(kv, 0, {"chief": 1, "worker": 2}, timeout=0.05)
    assert kvb.bump_generation(kv) == 1
    with pytest.raises(kvb.GenerationChanged):
        kvb.wait_for_peers(kv, 0, {"chief": 1, "worker": 2}, timeout=10)


def test_full_rendezvous_of_many_tasks_gives_every_task_the_same_spec(monkeypatch):
    monkeypatch.setattr(kvb, "POLL_S", 0.01)
    roles = {"chief": 1, "worker": 63}
    kv = FakeKV()
    specs: list[dict[str, list[str]]] = []
    errors: list[BaseException] = []

    def task(role: str, cid: str) -> None:
        try:
            slot = kvb.claim_slot(kv, role, roles[role], cid)
            gen = kvb.current_generation(kv)
            kv.put(addr_key(gen, role, slot.index), f"host:{1000 + slot.index}-{role}".encode())
            specs.append(build_cluster_spec(kvb.wait_for_peers(kv, gen, roles, timeout=30)))
        except BaseException as e:  # noqa: BLE001  (reported below)
            errors.append(e)

    threads = [threading.Thread(target=task, args=(r, f"{r}_{i}")) for r, k in roles.items() for i in range(k)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors[0]
    assert len(specs) == 64 and all(s == specs[0] for s in specs)
    assert {r: len(a) for r, a in specs[0].items()} == roles
