"""The start-up barrier's loops (tfnode.yarn.barrier) on an in-memory skein key-value store: the rendezvous, its
deadline, restarts (generation and slot) and the chief's end, as the supervisors of a job see them.

test_barrier_scale.py pins the cost of many tasks claiming at once; these pin what each loop answers.
"""

from __future__ import annotations

import operator
import random
import threading
import time

import pytest
import skein

from tests.unit.test_barrier_scale import FakeKV, yield_gil
from tfnode import contract
from tfnode.cluster_spec import build_cluster_spec
from tfnode.errors import TfnodeError
from tfnode.yarn import barrier as kvb

_COMPARE = {"==": operator.eq, "!=": operator.ne, "<": operator.lt, "<=": operator.le, ">": operator.gt,
            ">=": operator.ge}


class KV(FakeKV):
    """test_barrier_scale's FakeKV with what restarts use besides: compare-and-swap conditions (bump_generation),
    `del kv[key]` (clear_outcome), and the list of every `put` in order (what a supervisor reported, state by state).
    """

    def __init__(self, on_call=None):
        super().__init__(on_call)
        self._lock = threading.RLock()  # conditions and operations of a transaction under one hold, as the AM does
        self.puts: list[tuple[str, bytes]] = []

    def put(self, key: str, value: bytes, owner: str | None = None) -> None:
        super().put(key, value, owner)
        with self._lock:
            self.puts.append((key, value))

    def __delitem__(self, key: str) -> None:
        with self._lock:
            del self.data[key]  # KeyError when missing, as skein's
            self.owners.pop(key, None)

    def _holds(self, cond) -> bool:
        if isinstance(cond, skein.kv.missing):
            return cond.key not in self.data
        if isinstance(cond, skein.kv.exists):
            return cond.key in self.data
        if isinstance(cond, skein.kv.comparison):
            have = (self.data if cond.field == "value" else self.owners).get(cond.key)
            return have is not None and _COMPARE[cond.operator](have, cond.rhs)
        raise AssertionError(f"KV: unsupported condition {cond!r}")

    def transaction(self, conditions=(), on_success=(), on_failure=()):
        with self._lock:
            ok = all(self._holds(c) for c in conditions)
            res = super().transaction((), on_success if ok else on_failure)
            return skein.kv.TransactionResult(ok, res.results)


def register(kv: KV, gen: int, addrs: dict[tuple[str, int], str]) -> None:
    for (role, i), addr in addrs.items():
        kv.put(contract.addr_key(gen, role, i), addr.encode())


@pytest.fixture(autouse=True)
def fast_polls(monkeypatch):
    monkeypatch.setattr(kvb, "POLL_S", 0.02)


def test_when_every_task_registered_the_spec_comes_out_in_role_and_index_order():
    roles = {"worker": 3, "chief": 1, "evaluator": 1, "ps": 2}
    addrs = {(r, i): f"{r}-{i}.example:{2000 + i}" for r, n in roles.items() for i in range(n)}
    order = list(addrs)
    random.Random(7).shuffle(order)
    kv = KV()
    register(kv, 0, {t: addrs[t] for t in order})
    register(kv, 0, {("worker", 3): "extra:1", ("tensorboard", 0): "tb:6006"})  # neither is an expected task

    got = kvb.wait_for_peers(kv, 0, roles, timeout=5)
    assert list(got) == [("worker", 0), ("worker", 1), ("worker", 2), ("chief", 0), ("evaluator", 0), ("ps", 0),
                         ("ps", 1)]  # the job's roles, each by index
    assert got == addrs
    spec = build_cluster_spec(got)
    assert spec == {"ps": ["ps-0.example:2000", "ps-1.example:2001"], "chief": ["chief-0.example:2000"],
                    "evaluator": ["evaluator-0.example:2000"],
                    "worker": ["worker-0.example:2000", "worker-1.example:2001", "worker-2.example:2002"]}
    assert list(spec) == ["ps", "chief", "evaluator", "worker"]


def test_a_missing_task_times_out_within_the_deadline_naming_every_missing_task():
    kv = KV()
    register(kv, 0, {("chief", 0): "h:1", ("worker", 0): "h:2", ("worker", 2): "h:4"})
    polls = 0

    def count() -> None:
        nonlocal polls
        polls += 1

    started = time.monotonic()
    with pytest.raises(kvb.BarrierTimeout) as err:
        kvb.wait_for_peers(kv, 0, {"chief": 1, "worker": 3, "ps": 1}, timeout=0.3, on_poll=count)
    elapsed = time.monotonic() - started
    assert 0.3 <= elapsed < 0.3 + 0.5  # the deadline, plus one poll interval (and scheduling on a busy machine)
    assert err.value.missing == ["worker:1", "ps:0"]
    assert str(err.value).endswith("task(s) never arrived: worker:1, ps:0")
    assert isinstance(err.value, TimeoutError) and isinstance(err.value, TfnodeError)
    assert 3 <= polls <= 16  # it polled the whole time, POLL_S apart, not once and not in a busy loop


def test_the_timeout_message_gives_the_deadline_and_the_tasks():
    assert str(kvb.BarrierTimeout(["worker:1", "ps:0"], 300)) == (
        "start-up barrier timed out after 300s: task(s) never arrived: worker:1, ps:0")


def test_addresses_of_an_earlier_generation_are_not_used():
    kv = KV()
    roles = {"chief": 1, "worker": 2}
    kv.put(contract.GEN_KEY, b"10")
    register(kv, 1, {("chief", 0): "old:1", ("worker", 0): "old:2", ("worker", 1): "old:3"})
    register(kv, 9, {("worker", 1): "older:3"})
    register(kv, 10, {("chief", 0): "new:1"})
    with pytest.raises(kvb.BarrierTimeout) as err:
        kvb.wait_for_peers(kv, 10, roles, timeout=0.1)
    assert err.value.missing == ["worker:0", "worker:1"]  # generation 1 and 9 had them: they do not count

    register(kv, 10, {("worker", 0): "new:2", ("worker", 1): "new:3"})
    assert kvb.wait_for_peers(kv, 10, roles, timeout=5) == {("chief", 0): "new:1", ("worker", 0): "new:2",
                                                          ("worker", 1): "new:3"}


def test_a_restarted_task_takes_its_slot_bumps_the_generation_and_every_peer_registers_again():
    roles = {"chief": 1, "worker": 2}
    kv = KV()
    slots = {cid: kvb.claim_slot(kv, role, roles[role], cid) for role, cid in
             (("chief", "chief_0"), ("worker", "worker_0"), ("worker", "worker_1"))}
    assert [(s.role, s.index, s.restarted) for s in slots.values()] == [
        ("chief", 0, False), ("worker", 0, False), ("worker", 1, False)]
    assert kvb.current_generation(kv) == 0
    register(kv, 0, {("chief", 0): "c:1", ("worker", 0): "w0:1", ("worker", 1): "w1:1"})
    kv.put(contract.outcome_key("worker", 1), b"failed\nkilled")
    kv.put(contract.ack_key("worker", 1), b"1")
    kv.put(contract.outcome_key("worker", 0), b"ok")

    kv.release("worker_1")  # its container died; YARN starts a new one under a new id
    slot = kvb.claim_slot(kv, "worker", 2, "worker_2")
    assert (slot.index, slot.restarted) == (1, True)
    kvb.clear_outcome(kv, "worker", 1)
    kvb.clear_outcome(kv, "worker", 1)  # nothing left to clear is no error
    assert kv.get(contract.outcome_key("worker", 1)) is None and kv.get(contract.ack_key("worker", 1)) is None
    assert kv.get(contract.outcome_key("worker", 0)) == b"ok"  # the others' outcomes stay
    assert kvb.bump_generation(kv) == 1

    # generation 0 is complete, but worker:1's address there is its dead predecessor's: the peers must not use it
    with pytest.raises(kvb.GenerationChanged, match="generation 0 superseded"):
        kvb.wait_for_peers(kv, 0, roles, timeout=5)
    register(kv, kvb.current_generation(kv), {("chief", 0): "c:2", ("worker", 0): "w0:2", ("worker", 1): "w2:1"})
    assert kvb.wait_for_peers(kv, 1, roles, timeout=5) == {("chief", 0): "c:2", ("worker", 0): "w0:2",
                                                         ("worker", 1): "w2:1"}


def test_a_peer_waiting_in_the_barrier_sees_the_restart_at_its_next_poll():
    kv = KV()
    register(kv, 0, {("chief", 0): "c:1"})
    polls = 0

    def restart_on_the_second_poll() -> None:
        nonlocal polls
        polls += 1
        if polls == 2:
            kvb.bump_generation(kv)

    with pytest.raises(kvb.GenerationChanged):
        kvb.wait_for_peers(kv, 0, {"chief": 1, "worker": 1}, timeout=5, on_poll=restart_on_the_second_poll)
    assert polls == 2


def test_concurrent_restarts_each_bump_the_generation_once():
    kv = KV(on_call=yield_gil)
    kv.put(contract.GEN_KEY, b"3")
    results: list[int] = []
    start = threading.Barrier(8)

    def restart() -> None:
        start.wait()
        results.append(kvb.bump_generation(kv))

    threads = [threading.Thread(target=restart) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert sorted(results) == list(range(4, 12))  # a compare-and-swap: no two restarts take the same generation
    assert kvb.current_generation(kv) == 11


def test_the_first_generation_is_0_until_a_restart():
    kv = KV()
    assert kvb.current_generation(kv) == 0
    assert kvb.bump_generation(kv) == 1
    assert kv.get(contract.GEN_KEY) == b"1"


@pytest.mark.parametrize(("outcome", "restartable", "ended"), [
    (None, False, False),
    (b"ok", False, True),
    (b"ok", True, True),
    (b"failed\nTraceback: boom", False, True),  # no restart can follow: the ps tasks and the evaluator stop
    (b"failed\nTraceback: boom", True, False),  # YARN may restart it: they must still be there when it rejoins
])
def test_the_chief_has_ended_once_it_succeeded_or_failed_for_good(outcome, restartable, ended):
    kv = KV()
    if outcome is not None:
        kv.put(contract.outcome_key("chief", 0), outcome)
    kv.put(contract.outcome_key("worker", 0), b"ok")  # another task's outcome says nothing about the chief
    assert kvb.chief_has_ended(kv, ("chief", 0), restartable) is ended


def test_without_a_chief_role_worker_0_is_the_chief():
    job = contract.JobRuntime(entry_point="m:f", args=[], roles={"worker": 2, "ps": 1}, strategy="parameter_server")
    kv = KV()
    kv.put(contract.outcome_key("worker", 1), b"ok")
    assert not kvb.chief_has_ended(kv, job.chief_task, job.restartable)
    kv.put(contract.outcome_key("worker", 0), b"ok")
    assert kvb.chief_has_ended(kv, job.chief_task, job.restartable)


def test_only_the_first_failure_of_a_generation_claims_it():
    kv = KV()
    claims = [kvb.claim_first_failure(kv, 0, t) for t in ("worker:1", "chief:0", "worker:0")]
    assert claims == [True, False, False] and kv.get(contract.first_failure_key(0)) == b"worker:1"
    assert kvb.claim_first_failure(kv, 1, "chief:0")  # a new generation is a new start


def test_a_lost_peer_is_one_whose_container_ended_without_success_or_that_reported_a_failure():
    roles = {"chief": 1, "worker": 3, "ps": 1}
    kv = KV()
    for role, i in [("chief", 0), ("worker", 0), ("worker", 2)]:  # worker:1 and ps:0 hold no slot: their
        kv.put(contract.slot_key(role, i), b"c", owner="c")       # containers ended
    kv.put(contract.outcome_key("ps", 0), b"ok")  # ... ps:0's because it was done
    kv.put(contract.outcome_key("worker", 2), b"failed\nTraceback: boom")  # reported, its container ends soon
    assert kvb.lost_peers(kv, roles, ("chief", 0)) == [("worker", 1), ("worker", 2)]
    assert kvb.lost_peers(kv, roles, ("worker", 1)) == [("worker", 2)]  # never itself
    for role, i in [("worker", 1), ("ps", 0)]:
        kv.put(contract.slot_key(role, i), b"c2", owner="c2")
    del kv[contract.outcome_key("worker", 2)]
    assert kvb.lost_peers(kv, roles, ("chief", 0)) == []
