"""The container's supervisor (tfnode.yarn.bootstrap.Supervisor) with its real task process, on an in-memory skein
key-value store: the states and the outcome it writes for a task that succeeds, fails, is killed or stalls, restarts,
and the stall watchdog on a fake clock.

The task process is bootstrap's own `--child`, running a user module written into the test's working folder (no
TensorFlow: only ps tasks import it); the test plays the job's other tasks through the KV.
"""

from __future__ import annotations

import json
import textwrap
import threading
import time
from pathlib import Path

import pytest

from tests.unit.fakes import ManualClock
from tests.unit.test_barrier_loops import KV, register
from tfnode import contract, progress
from tfnode.yarn import barrier as kvb
from tfnode.yarn import bootstrap

PRELUDE = """\
import json, os, signal, sys, time
from pathlib import Path

def generation():
    return json.loads(os.environ["TFOY_CTX"])["generation"]

def note(what):  # what the task saw, for the test to read
    with open("task-notes.jsonl", "a") as f:
        f.write(json.dumps({"what": what, "pid": os.getpid(), "generation": generation(),
                            "tf_config": json.loads(os.environ["TF_CONFIG"])}) + "\\n")
"""


@pytest.fixture
def container(tmp_path, monkeypatch):
    """A container's working folder and fast loops; returns a function that ships the user module `task.py`."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(kvb, "POLL_S", 0.01)
    monkeypatch.setattr(bootstrap, "CHILD_POLL_S", 0.02)
    monkeypatch.setattr(bootstrap, "STACK_DUMP_WAIT_S", 0.5)

    def ship(code: str) -> None:
        (tmp_path / "task.py").write_text(PRELUDE + textwrap.dedent(code))

    return ship


def job(roles: dict[str, int], monkeypatch, **kw) -> contract.JobRuntime:
    """The job runtime, also in the environment, where the client puts it for every container."""
    runtime = contract.JobRuntime(entry_point="task:main", args=["--epochs", "1"], roles=roles,
                                  strategy="multi_worker_mirrored", **{"barrier_timeout": 10, **kw})
    monkeypatch.setenv(contract.JOB_ENV, runtime.encode())
    return runtime


def states(kv: KV, role: str, index: int) -> list[dict]:
    return [json.loads(v) for k, v in kv.puts if k == contract.state_key(role, index)]


def notes() -> list[dict]:
    path = Path("task-notes.jsonl")
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def outcome(kv: KV, role: str, index: int) -> str | None:
    raw = kv.get(contract.outcome_key(role, index))
    return None if raw is None else raw.decode()


def wait_until(cond, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "timed out waiting for the supervisor"
        time.sleep(0.01)


def in_thread(sup: bootstrap.Supervisor) -> tuple[threading.Thread, list[int]]:
    rc: list[int] = []
    t = threading.Thread(target=lambda: rc.append(sup.run()), daemon=True)
    t.start()
    return t, rc


def test_a_task_that_returns_reports_ok_after_starting_waiting_running(container, monkeypatch, capsys):
    container("""
        def main(args, ctx):
            note(f"{ctx.job_name}:{ctx.task_index} {args}")
    """)
    runtime = job({"chief": 1, "worker": 1}, monkeypatch)
    kv = KV()
    register(kv, 0, {("worker", 0): "w0.example:2222"})  # the peer is there already
    sup = bootstrap.Supervisor(kv, runtime, "chief", "container_7", "c0.example")

    assert sup.run() == 0
    assert outcome(kv, "chief", 0) == "ok"
    own = kv.get(contract.addr_key(0, "chief", 0)).decode()
    host, port = own.split(":")
    assert host == "c0.example" and 1024 <= int(port) < 65536
    seen = [(s["state"], s.get("generation"), s.get("restarted")) for s in states(kv, "chief", 0)]
    assert seen == [("starting", None, False), ("waiting", 0, None), ("running", 0, None), ("succeeded", None, None)]
    running = states(kv, "chief", 0)[2]
    (task,) = notes()
    assert running["child_pid"] == task["pid"] and running["container"] == "container_7"
    assert running["host"] == "c0.example"
    assert task["what"] == "chief:0 ['--epochs', '1']"
    assert task["tf_config"] == {"cluster": {"chief": [own], "worker": ["w0.example:2222"]},
                                 "task": {"type": "chief", "index": 0}}
    assert f"{contract.TASK_BANNER} chief:0 container container_7 on c0.example" in capsys.readouterr().out


def test_a_failing_task_carries_its_traceback_into_the_outcome(container, monkeypatch, capsys):
    container("""
        def load_shards(path):
            raise FileNotFoundError(f"no shard under {path}")

        def main(args, ctx):
            load_shards("hdfs:///data/missing")
    """)
    kv = KV()
    sup = bootstrap.Supervisor(kv, job({"chief": 1}, monkeypatch), "chief", "container_1", "h")

    assert sup.run() == 1
    text = outcome(kv, "chief", 0)
    assert text.startswith("failed\nTraceback (most recent call last):\n")
    detail = contract.failure_detail(text)
    assert 'in load_shards\n    raise FileNotFoundError(f"no shard under {path}")' in detail
    assert detail.rstrip().endswith("FileNotFoundError: no shard under hdfs:///data/missing")
    assert detail == Path("tfoy-result-chief-0-0.txt").read_text()  # as the task process wrote it
    assert [s["state"] for s in states(kv, "chief", 0)] == ["starting", "waiting", "running", "failed"]
    assert f"tfoy: task chief:0 failed:\n{detail}" in capsys.readouterr().err


@pytest.mark.parametrize(("body", "detail"), [
    ("os.kill(os.getpid(), signal.SIGKILL)", "task process was killed by signal 9 (SIGKILL)"),
    ("os._exit(3)", "task process exited with code 3"),
])
def test_a_task_process_that_leaves_no_traceback_is_reported_by_how_it_ended(container, monkeypatch, body, detail):
    container(f"""
        def main(args, ctx):
            {body}
    """)
    kv = KV()
    sup = bootstrap.Supervisor(kv, job({"chief": 1}, monkeypatch), "chief", "container_1", "h")
    assert sup.run() == 1
    assert outcome(kv, "chief", 0) == f"failed\n{detail}"
    assert states(kv, "chief", 0)[-1]["state"] == "failed"


@pytest.mark.parametrize(("code", "ok"), [(0, True), (None, True), (4, False)])
def test_sys_exit_in_user_code_is_success_only_for_0(container, monkeypatch, code, ok):
    container(f"""
        def main(args, ctx):
            sys.exit({code})
    """)
    kv = KV()
    sup = bootstrap.Supervisor(kv, job({"chief": 1}, monkeypatch), "chief", "container_1", "h")
    assert sup.run() == (0 if ok else 1)
    if ok:
        assert outcome(kv, "chief", 0) == "ok"
    else:
        assert outcome(kv, "chief", 0).rstrip().endswith("SystemExit: 4")


def test_the_barrier_timeout_fails_the_task_naming_the_missing_ones_and_starts_no_task_process(
        container, monkeypatch):
    container("""
        def main(args, ctx):
            note("ran")
    """)
    kv = KV()
    register(kv, 0, {("worker", 1): "w1:1"})
    runtime = job({"chief": 1, "worker": 2, "ps": 1}, monkeypatch, barrier_timeout=0.2)
    sup = bootstrap.Supervisor(kv, runtime, "chief", "container_1", "h")

    started = time.monotonic()
    assert sup.run() == 1
    assert time.monotonic() - started < 5
    text = outcome(kv, "chief", 0)
    assert text.startswith("failed\nstart-up barrier timed out after ")
    assert text.endswith(": task(s) never arrived: worker:0, ps:0")
    assert [s["state"] for s in states(kv, "chief", 0)] == ["starting", "waiting", "failed"]
    assert notes() == []


def test_a_peers_restart_stops_the_task_and_runs_it_again_with_the_new_addresses(container, monkeypatch):
    container("""
        def main(args, ctx):
            note("started")
            if generation() == 0:
                time.sleep(60)  # training, until the supervisor stops it
    """)
    kv = KV()
    register(kv, 0, {("chief", 0): "chief-old:1"})
    sup = bootstrap.Supervisor(kv, job({"chief": 1, "worker": 1}, monkeypatch), "worker", "container_2", "w0")
    thread, rc = in_thread(sup)
    wait_until(lambda: len(notes()) == 1)

    assert kvb.bump_generation(kv) == 1  # what the chief's restarted container does first
    register(kv, 1, {("chief", 0): "chief-new:1"})
    thread.join(15)
    assert rc == [0] and outcome(kv, "worker", 0) == "ok"
    first, second = notes()
    assert (first["generation"], second["generation"]) == (0, 1)
    assert first["tf_config"]["cluster"]["chief"] == ["chief-old:1"]
    assert second["tf_config"]["cluster"]["chief"] == ["chief-new:1"]  # not the dead chief's address
    assert second["tf_config"]["cluster"]["worker"] == [kv.get(contract.addr_key(1, "worker", 0)).decode()]
    seen = [(s["state"], s.get("generation")) for s in states(kv, "worker", 0)]
    assert seen == [("starting", None), ("waiting", 0), ("running", 0), ("waiting", 1), ("running", 1),
                    ("succeeded", None)]


def test_a_restarted_container_clears_its_old_outcome_and_starts_a_new_generation(container, monkeypatch):
    container("""
        def main(args, ctx):
            note("started")
    """)
    kv = KV()
    kv.put(contract.started_key("chief", 0), b"container_1")  # the container it replaces had started the task
    kv.put(contract.outcome_key("chief", 0), b"failed\nkilled")
    kv.put(contract.ack_key("chief", 0), b"1")
    sup = bootstrap.Supervisor(kv, job({"chief": 1}, monkeypatch, restartable=True), "chief", "container_9", "h")

    assert sup.run() == 0
    assert kvb.current_generation(kv) == 1
    assert kv.get(contract.ack_key("chief", 0)) is None and outcome(kv, "chief", 0) == "ok"
    assert [(n["what"], n["generation"]) for n in notes()] == [("started", 1)]
    assert kv.get(contract.addr_key(0, "chief", 0)) is None  # it never registered in the superseded generation
    seen = [(s["state"], s.get("generation"), s.get("restarted")) for s in states(kv, "chief", 0)]
    assert seen == [("starting", None, True), ("waiting", 1, None), ("running", 1, None), ("succeeded", None, None)]


def hold_slots(kv: KV, *tasks: tuple[str, int]) -> None:
    """The peers' containers are alive: each holds its slot (skein releases it when the container ends)."""
    for role, i in tasks:
        kv.put(contract.slot_key(role, i), f"{role}_{i}".encode(), owner=f"{role}_{i}")


@pytest.mark.parametrize("peer", ["killed", "failed first"])
def test_a_failure_while_a_peer_restarts_rejoins_in_the_new_generation(container, monkeypatch, peer):
    """worker:1's container was killed (its slot released) or worker:1 failed first (it reports, YARN restarts it):
    either way worker:0, failing after it, waits past the grace for worker:1's restart instead of failing too."""
    monkeypatch.setattr(bootstrap, "LOST_PEER_GRACE_S", 0.1)
    container("""
        def main(args, ctx):
            note("started")
            if generation() == 0:
                raise ConnectionError("collective aborted: worker:1 went away")
    """)
    kv = KV()
    register(kv, 0, {("worker", 1): "w1:1"})
    if peer == "failed first":
        hold_slots(kv, ("worker", 1))
        assert kvb.claim_first_failure(kv, 0, "worker:1")
    runtime = job({"worker": 2}, monkeypatch, restartable=True)
    sup = bootstrap.Supervisor(kv, runtime, "worker", "worker_0", "w0")
    thread, rc = in_thread(sup)
    wait_until(lambda: any(s["state"] == "waiting-for-restart" for s in states(kv, "worker", 0)))
    thread.join(0.5)
    assert thread.is_alive() and outcome(kv, "worker", 0) is None  # long past the grace: still waiting

    kvb.bump_generation(kv)  # worker:1's new container
    register(kv, 1, {("worker", 1): "w1-new:1"})
    thread.join(15)
    assert rc == [0] and outcome(kv, "worker", 0) == "ok"
    assert [n["generation"] for n in notes()] == [0, 1]
    assert [s["state"] for s in states(kv, "worker", 0)] == [
        "starting", "waiting", "running", "waiting-for-restart", "waiting", "running", "succeeded"]


def test_a_failure_no_restart_follows_is_reported_after_the_restart_wait(container, monkeypatch):
    monkeypatch.setattr(bootstrap, "RESTART_WAIT_S", 0.2)
    container("""
        def main(args, ctx):
            raise ConnectionError("peer went away")
    """)
    kv = KV()
    sup = bootstrap.Supervisor(kv, job({"chief": 1}, monkeypatch, restartable=True), "chief", "chief_0", "h")
    assert sup.run() == 1
    assert outcome(kv, "chief", 0).rstrip().endswith("ConnectionError: peer went away")
    assert [s["state"] for s in states(kv, "chief", 0)] == [
        "starting", "waiting", "running", "waiting-for-restart", "failed"]


def test_the_first_failure_with_every_peer_still_there_is_reported_at_once(container, monkeypatch):
    """Before, the task that failed on its own waited RESTART_WAIT_S (90 s) for a peer's restart that only its own
    failure report (YARN restarting it) could start."""
    monkeypatch.setattr(bootstrap, "LOST_PEER_GRACE_S", 0.3)
    container("""
        def main(args, ctx):
            raise ValueError("fails once on purpose")
    """)
    kv = KV()
    register(kv, 0, {("worker", 0): "w0:1"})
    hold_slots(kv, ("worker", 0))
    sup = bootstrap.Supervisor(kv, job({"worker": 2}, monkeypatch, restartable=True), "worker", "worker_1", "w1")
    started = time.monotonic()
    assert sup.run() == 1
    assert time.monotonic() - started < bootstrap.RESTART_WAIT_S / 3
    assert kv.get(contract.first_failure_key(0)) == b"worker:1"
    assert outcome(kv, "worker", 1).rstrip().endswith("ValueError: fails once on purpose")
    assert [s["state"] for s in states(kv, "worker", 1)][-2:] == ["waiting-for-restart", "failed"]


@pytest.mark.parametrize("restartable", [False, True])
def test_the_evaluator_follows_the_chief_until_it_has_ended(container, monkeypatch, restartable):
    container("""
        def main(args, ctx):
            note("evaluating")
            time.sleep(60)  # evaluates checkpoints while training goes on
    """)
    kv = KV()
    register(kv, 0, {("chief", 0): "c:1"})
    runtime = job({"chief": 1, "evaluator": 1}, monkeypatch, restartable=restartable, progress_timeout=0.1)
    sup = bootstrap.Supervisor(kv, runtime, "evaluator", "evaluator_0", "e")
    thread, rc = in_thread(sup)
    wait_until(lambda: len(notes()) == 1)
    assert notes()[0]["tf_config"] == {"cluster": {"chief": ["c:1"]}, "task": {"type": "evaluator", "index": 0}}

    kv.put(contract.outcome_key("chief", 0), b"failed\nTraceback: boom")
    thread.join(0.5)  # long past timeouts.progress: the evaluator trains nothing, so no watchdog stops it
    assert thread.is_alive() is restartable  # a chief YARN may restart finds its evaluator still there
    kv.put(contract.outcome_key("chief", 0), b"ok")
    thread.join(15)
    assert rc == [0] and outcome(kv, "evaluator", 0) == "ok"
    assert [s["state"] for s in states(kv, "evaluator", 0)] == ["starting", "waiting", "running", "succeeded"]


def test_the_stall_watchdog_stops_a_task_that_reports_no_progress_naming_it(container, monkeypatch, capsys):
    container("""
        def stuck_in_the_input_pipeline():
            time.sleep(60)

        def main(args, ctx):
            stuck_in_the_input_pipeline()
    """)
    kv = KV()
    register(kv, 0, {("chief", 0): "c:1"})
    # 3 s: the task process starts (and makes its first report) well within, also on a loaded 2-core machine
    runtime = job({"chief": 1, "worker": 1}, monkeypatch, progress_timeout=3.0)
    sup = bootstrap.Supervisor(kv, runtime, "worker", "worker_0", "w")

    started = time.monotonic()
    assert sup.run() == 1
    assert 3.0 < time.monotonic() - started < 15
    detail = contract.failure_detail(outcome(kv, "worker", 0))
    assert detail.startswith("task worker:0 stalled: no progress report for 3s (timeouts.progress: no model.fit "
                             "batch, no ctx.report); it was stopped. Python stacks of its threads:\n")
    assert "in stuck_in_the_input_pipeline" in detail  # faulthandler's dump of the stuck process
    assert "task worker:0 stalled; Python stacks of its threads:" in capsys.readouterr().err
    assert states(kv, "worker", 0)[-1]["state"] == "failed"
    last = json.loads(kv.get(contract.progress_key("worker", 0)))
    assert last["phase"] == "running"  # the one report the task process made, as it started


def test_a_task_that_keeps_reporting_outlives_the_stall_timeout(container, monkeypatch):
    container("""
        def main(args, ctx):
            for epoch in range(1, 11):
                time.sleep(0.15)
                ctx.reporter.report(phase="training", epoch=epoch, epochs=10, force=True)
    """)
    kv = KV()
    runtime = job({"chief": 1}, monkeypatch, progress_timeout=0.7)
    sup = bootstrap.Supervisor(kv, runtime, "chief", "chief_0", "h")

    started = time.monotonic()
    assert sup.run() == 0
    assert time.monotonic() - started > 1.4  # it ran past twice the timeout
    assert outcome(kv, "chief", 0) == "ok"
    last = json.loads(kv.get(contract.progress_key("chief", 0)))
    assert (last["phase"], last["epoch"], last["epochs"]) == ("training", 10, 10)
    forwarded = [json.loads(v)["seq"] for k, v in kv.puts if k == contract.progress_key("chief", 0)]
    assert forwarded == sorted(set(forwarded)) and len(forwarded) >= 3  # each snapshot once, in order


def test_progress_watch_fires_only_after_the_timeout_without_a_new_snapshot(tmp_path):
    clock, kv, path = ManualClock(1000.0), KV(), tmp_path / "progress.json"
    key = contract.progress_key("worker", 1)
    watch = bootstrap.ProgressWatch(kv, key, path, timeout=10, clock=clock)
    sink = progress.FileSink(path)

    clock.now += 10
    assert not watch.poll()  # no report yet, but the timeout is not over
    clock.now += 0.5
    assert watch.poll()

    sink({"phase": "training", "epoch": 1, "seq": 1})
    assert not watch.poll()  # a new snapshot restarts the clock
    assert json.loads(kv.get(key))["epoch"] == 1
    clock.now += 9
    sink({"phase": "training", "epoch": 1, "seq": 1, "time": 5})  # written again, no newer report
    assert not watch.poll()
    clock.now += 1.5
    assert watch.poll()
    assert [k for k, _ in kv.puts] == [key]  # the same snapshot goes to the KV once

    sink({"phase": "training", "epoch": 2, "seq": 2})
    assert not watch.poll()
    assert json.loads(kv.get(key))["epoch"] == 2


def test_progress_watch_without_a_timeout_only_forwards(tmp_path):
    clock, kv, path = ManualClock(1000.0), KV(), tmp_path / "progress.json"
    watch = bootstrap.ProgressWatch(kv, "k", path, timeout=None, clock=clock)
    clock.now += 1e6
    assert not watch.poll()
    progress.FileSink(path)({"seq": 1, "phase": "serving"})
    assert not watch.poll() and json.loads(kv.get("k")) == {"seq": 1, "phase": "serving"}


def test_a_kv_that_went_away_does_not_break_the_watch(tmp_path):
    class GoneKV:
        def put(self, key, value):
            raise ConnectionError("application master gone")

    clock, path = ManualClock(1000.0), tmp_path / "progress.json"
    watch = bootstrap.ProgressWatch(GoneKV(), "k", path, timeout=5, clock=clock)
    progress.FileSink(path)({"seq": 1})
    clock.now += 3
    assert not watch.poll()  # the snapshot still counts as progress
    clock.now += 5.5
    assert watch.poll()


def test_the_outcome_waits_for_a_watching_clients_acknowledgement_only_so_long(monkeypatch):
    monkeypatch.setattr(bootstrap, "ACK_WAIT_S", 0.3)
    monkeypatch.setattr(kvb, "POLL_S", 0.01)
    kv = KV()
    kv.put(contract.CLIENT_KEY, b"watching")
    sup = bootstrap.Supervisor(kv, job({"chief": 1}, monkeypatch), "chief", "chief_0", "h")
    sup.index = 0
    started = time.monotonic()
    assert sup.report(True) == 0
    assert 0.3 <= time.monotonic() - started < 2  # no acknowledgement came: it gives up, the app may end
    assert outcome(kv, "chief", 0) == "ok"
