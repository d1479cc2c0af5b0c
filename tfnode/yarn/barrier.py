"""Start-up rendezvous of a YARN job in the skein key-value store, always with a deadline.

skein's `kv.wait` blocks forever (tf-yarn #34: a task dying before it registers hangs the job), so every wait here
polls with a deadline and says which tasks never arrived.

The keys, and what their values say, are tfnode.contract's (the client reads and writes some of them).
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass

from tfnode.contract import (
    GEN_KEY,
    OUTCOME_OK,
    OUTCOME_PREFIX,
    SLOT_PREFIX,
    ack_key,
    addr_prefix,
    first_failure_key,
    outcome_key,
    parse_task_keys,
    slot_key,
    started_key,
    state_key,
    task_name,
)
from tfnode.contract import addr_key as addr_key  # re-exported: benchmarks/barrier_scale.py registers through it
from tfnode.errors import TfnodeError

POLL_S = 0.2
BARRIER_POLLS_PER_S = 500  # the barrier polls of all tasks together, at most: one AM serves them and the claims


class BarrierTimeout(TfnodeError, TimeoutError):
    def __init__(self, missing: list[str], timeout: float):
        self.missing = missing
        names = ", ".join(missing)
        super().__init__(f"start-up barrier timed out after {timeout:.0f}s: task(s) never arrived: {names}")


class GenerationChanged(TfnodeError, RuntimeError):
    """A peer restarted: every task re-registers in the new generation."""


def chief_has_ended(kv, chief: tuple[str, int], restartable: bool) -> bool:
    """True once the chief is done for good: its outcome is "ok", or a failure no restart can follow. A failed
    chief that YARN may restart must find its ps tasks, evaluator and TensorBoard still there when it rejoins
    (and if its restarts run out, skein ends the application, and them with it)."""
    outcome = kv.get(outcome_key(*chief))
    return outcome is not None and (outcome == OUTCOME_OK.encode() or not restartable)


def clear_outcome(kv, role: str, i: int) -> None:
    """A restarted task's earlier outcome (and the client's acknowledgement of it) no longer holds."""
    for key in (outcome_key(role, i), ack_key(role, i)):
        try:
            del kv[key]
        except KeyError:
            pass


def expected_tasks(roles: Mapping[str, int]) -> list[tuple[str, int]]:
    return [(r, i) for r, n in roles.items() for i in range(n)]


@dataclass
class Slot:
    role: str
    index: int
    restarted: bool


def _own_instance(container_id: str) -> int | None:
    """skein's instance number in a container id ("worker_3" → 3), None if there is none."""
    _, _, num = container_id.rpartition("_")
    return int(num) if num.isdigit() else None


def slot_candidates(taken: Collection[int], instances: int, container_id: str,
                    rng: random.Random | None = None) -> list[int]:
    """The free task indices in the order to try them: this container's own instance number first (containers
    worker_0..worker_n-1 of a fresh job each take their own index without a conflict), then the others shuffled, so
    that tasks racing for the same free slots spread over them instead of all trying the lowest one first."""
    free = [i for i in range(instances) if i not in taken]
    own = _own_instance(container_id)
    first = [own] if own in free else []
    rest = [i for i in free if i != own]
    (rng or random).shuffle(rest)
    return first + rest


def claim_slot(kv, role: str, instances: int, container_id: str, timeout: float = 60) -> Slot:
    """Takes a free task index of `role` (owned by this container, so it frees itself on exit).

    Each pass lists the slots taken (one `get_prefix`) and tries only free ones, in `slot_candidates` order: trying
    every index from 0 made N tasks starting together cost ~N²/2 transactions (32k and 15 s for 256 tasks).
    """
    import skein

    prefix = f"{SLOT_PREFIX}{role}/"
    deadline = time.monotonic() + timeout
    while True:
        taken = {int(k[len(prefix):]) for k in kv.get_prefix(prefix) if k[len(prefix):].isdigit()}
        for i in slot_candidates(taken, instances, container_id):
            res = kv.transaction(
                conditions=[skein.kv.missing(slot_key(role, i))],
                on_success=[skein.kv.put(slot_key(role, i), container_id.encode(), owner=container_id)],
            )
            if res.succeeded:
                restarted = kv.get(started_key(role, i)) is not None
                kv.put(started_key(role, i), container_id.encode())
                return Slot(role, i, restarted)
        if time.monotonic() > deadline:  # the replaced container's key has not been released yet
            raise TimeoutError(f"no free {role} slot of {instances} within {timeout:.0f}s")
        time.sleep(POLL_S)


def current_generation(kv) -> int:
    raw = kv.get(GEN_KEY)
    return int(raw) if raw else 0


def bump_generation(kv) -> int:
    """Compare-and-swap +1 on the generation; returns the new generation."""
    import skein

    while True:
        raw = kv.get(GEN_KEY)
        new = (int(raw) if raw else 0) + 1
        cond = skein.kv.value(GEN_KEY) == raw if raw is not None else skein.kv.missing(GEN_KEY)
        if kv.transaction(conditions=[cond], on_success=[skein.kv.put(GEN_KEY, str(new).encode())]).succeeded:
            return new


def claim_first_failure(kv, gen: int, task: str) -> bool:
    """True for the first task to claim a failure in generation `gen` (compare-and-swap): a failing task takes down
    its peers' collectives with it, so the first failure is the likely cause and the later ones its consequences."""
    import skein

    key = first_failure_key(gen)
    return kv.transaction(conditions=[skein.kv.missing(key)], on_success=[skein.kv.put(key, task.encode())]).succeeded


def lost_peers(kv, roles: Mapping[str, int], me: tuple[str, int]) -> list[tuple[str, int]]:
    """The job's other tasks that YARN is restarting or may restart: their container has ended (the AM released
    the slot the container owned) without an "ok" outcome, or they reported a failure (and their container ends)."""
    import skein

    slots, outcomes = kv.transaction(on_success=[skein.kv.get_prefix(SLOT_PREFIX),
                                                 skein.kv.get_prefix(OUTCOME_PREFIX)]).results
    held = parse_task_keys(slots, SLOT_PREFIX)
    ended = parse_task_keys(outcomes, OUTCOME_PREFIX)
    return [t for t in expected_tasks(roles) if t != me and (
        (t not in held and ended.get(t) != OUTCOME_OK.encode()) or ended.get(t, b"").startswith(b"failed"))]


def barrier_poll_interval(tasks: int) -> float:
    """Seconds between a task's barrier polls: POLL_S, longer for big jobs so that the AM, which all tasks poll,
    is not flooded (every poll returns every address registered so far) while the last tasks still register."""
    return max(POLL_S, tasks / BARRIER_POLLS_PER_S)


def wait_for_peers(kv, gen: int, roles: Mapping[str, int], timeout: float,
                   on_poll: Callable[[], None] | None = None) -> dict[tuple[str, int], str]:
    """Blocks until every expected task registered in generation `gen`; returns {(role, i): "host:port"}.

    Raises BarrierTimeout naming the missing tasks, GenerationChanged if a peer restarted meanwhile (even when every
    task registered in `gen`: the restarted peer's address there is its predecessor's).
    """
    import skein

    want = expected_tasks(roles)
    deadline = time.monotonic() + timeout
    poll = [skein.kv.get_prefix(addr_prefix(gen)), skein.kv.get(GEN_KEY)]  # one KV call per poll, not two
    interval = barrier_poll_interval(len(want))
    while True:
        addrs, raw_gen = kv.transaction(on_success=poll).results
        if (int(raw_gen) if raw_gen else 0) != gen:
            raise GenerationChanged(f"generation {gen} superseded")
        have = parse_task_keys(addrs, addr_prefix(gen))
        if all(t in have for t in want):
            return {t: have[t].decode() for t in want}
        if time.monotonic() > deadline:
            raise BarrierTimeout([task_name(*t) for t in want if t not in have], timeout)
        if on_poll:
            on_poll()
        time.sleep(interval)


def put_state(kv, role: str, index: int, state: str, **extra) -> None:
    kv.put(state_key(role, index), json.dumps({"state": state, "time": time.time(), **extra}).encode())
