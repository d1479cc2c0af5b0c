"""The client's watch loop (yarn_app.watch) against fakes of skein's client, its application client and the AM's
key-value store: the exit code, the lines printed, the history record, the timeouts, an AM that goes away.

The fakes answer exactly what the loop asks (application_report, connect, get_containers, kv.get_prefix, kv
writes, kill_application) from a script of steps, one step a poll; the loop's clock is faked too (a poll's
sleep moves it on), so a 300 s timeout takes no time. What YARN and skein really do is the integration tests'
(tests/integration/test_yarn_jobs.py).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import pytest
import skein

from tfnode import contract
from yarn_app import cluster_checks, history
from yarn_app import watch as yw
from yarn_app.errors import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK
from yarn_app.spec import JobSpec

APP = "application_1_0001"
TRACEBACK = 'Traceback (most recent call last):\n  File "train.py", line 9, in main\nValueError: bad batch'


def state(task: str, value: str, container: str = "") -> dict[str, bytes]:
    """What a task's supervisor writes when its state changes (tfnode.yarn.bootstrap)."""
    role, i = contract.parse_task_name(task)
    return {contract.state_key(role, i): json.dumps({"state": value, "container": container or None}).encode()}


def outcome(task: str, traceback: str | None = None) -> dict[str, bytes]:
    """What a task's supervisor writes when its task ends: "ok", or "failed" and the traceback."""
    role, i = contract.parse_task_name(task)
    return {contract.outcome_key(role, i): contract.outcome_text(traceback is None, traceback or "").encode()}


@dataclass
class Step:
    """What YARN and the AM answer during one poll; the last step repeats.

    am: "up"; "starting" (the report says RUNNING, skein cannot connect yet); "going" (reads answer, writes do not:
    the AM is shutting down); "gone" (nothing answers, though the report may still say RUNNING).
    """

    state: str = "RUNNING"
    final: str = "UNDEFINED"
    containers: dict[str, str] = field(default_factory=dict)  # task name → container state
    kv: dict[str, bytes] = field(default_factory=dict)  # written by the supervisors by now (and kept)
    am: str = "up"
    diagnostics: str = ""


class Clock:
    """yarn_app.watch's `time`: each sleep is one poll, after which the fakes play their next step."""

    def __init__(self, interrupt_at: int | None = None) -> None:
        self.now, self.polls, self.interrupt_at = 0.0, 0, interrupt_at

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        if self.polls == self.interrupt_at:
            raise KeyboardInterrupt
        self.now += seconds
        self.polls += 1


class Report:
    def __init__(self, state: str, final: str, diagnostics: str = "") -> None:
        self.state, self.final_status, self.diagnostics = state, final, diagnostics


class Container:
    def __init__(self, task: str, state: str) -> None:
        self.service_name, self.instance = contract.parse_task_name(task)
        self.state, self.exit_message = state, "Exit code is 1" if state == "FAILED" else ""
        self.yarn_container_id, self.id = f"container_{self.service_name}_{self.instance}", task


class KV(dict):
    """The AM's key-value store: skein's get_prefix and item writes, failing when the AM no longer answers."""

    def __init__(self, yarn: Yarn) -> None:
        super().__init__()
        self.yarn = yarn

    def get_prefix(self, prefix: str) -> dict[str, bytes]:
        self.yarn.answering(reads=True)
        return {k: v for k, v in self.items() if k.startswith(prefix)}

    def __setitem__(self, key: str, value: bytes) -> None:
        self.yarn.answering(reads=False)
        super().__setitem__(key, value)


class Yarn:
    """skein.Client and the skein.ApplicationClient it connects to, in one, playing `steps` one per poll."""

    def __init__(self, clock: Clock, steps: list[Step]) -> None:
        self.clock, self.steps = clock, steps
        self.kv = KV(self)
        self.connects = self.kills = 0

    @property
    def step(self) -> Step:
        step = self.steps[min(self.clock.polls, len(self.steps) - 1)]
        dict.update(self.kv, step.kv)  # what the supervisors have written by this poll
        return step

    def answering(self, reads: bool) -> None:
        if self.step.am == "gone" or (self.step.am == "going" and not reads):
            raise skein.exceptions.ConnectionError("Unable to connect to application")

    # skein.Client
    def application_report(self, app_id: str) -> Report:
        assert app_id == APP
        if self.kills:
            return Report("KILLED", "KILLED", "Application killed by user.")
        return Report(self.step.state, self.step.final, self.step.diagnostics)

    def connect(self, app_id: str, wait: bool = True) -> Yarn:
        assert app_id == APP and wait is False  # the loop polls; a blocking connect would stop its timeouts
        self.connects += 1
        if self.step.state != "RUNNING" or self.step.am == "starting":
            raise skein.exceptions.ApplicationNotRunningError(f"{app_id} is not running")
        return self

    def kill_application(self, app_id: str) -> None:
        assert app_id == APP
        self.kills += 1

    # skein.ApplicationClient
    def get_containers(self, states=None) -> list[Container]:
        self.answering(reads=True)
        return [Container(task, s) for task, s in self.step.containers.items() if states is None or s in states]


@dataclass
class Watched:
    code: int | None
    lines: list[str]
    yarn: Yarn
    clock: Clock
    records: list[dict]  # every history record written

    @property
    def text(self) -> str:
        return "\n".join(self.lines)

    def job_lines(self) -> list[str]:
        """The job's progress lines, without their elapsed time."""
        return [line[9:] for line in self.lines if " containers requested " in line]

    def phases(self, task: str) -> list[str]:
        """The phases the live view printed for one task, in order."""
        return [line[9:].split()[1] for line in self.lines if line[9:].startswith(f"{task} ")]


@pytest.fixture
def watch(monkeypatch, tmp_path):
    """watch(steps, interrupt_at=None, java_log=None, **spec sections) → Watched, the loop run to its end;
    watch.records: the history records written (also when the loop raised)."""
    monkeypatch.setattr(cluster_checks, "tracking_url", lambda app_id: f"http://rm/proxy/{app_id}/")
    records: list[dict] = []
    write = history.write
    monkeypatch.setattr(history, "write", lambda record, folder: records.append(record) or write(record, folder))

    def run(steps: list[Step], interrupt_at: int | None = None, java_log=None, **sections) -> Watched:
        clock = Clock(interrupt_at)
        monkeypatch.setattr(yw, "time", clock)
        spec = JobSpec.from_dict({"entry_point": "toy_train:main", "roles": {"chief": {}, "worker": {}},
                                  "history_dir": f"file://{tmp_path}/history", **sections})
        yarn, lines = Yarn(clock, steps), []
        watched = Watched(None, lines, yarn, clock, records)
        watched.code = yw.watch(yarn, APP, spec, out=lines.append, java_log=java_log)
        return watched

    run.records = records
    return run


BOTH = ("chief:0", "worker:0")


def running(**kv: bytes) -> Step:
    return Step(containers=dict.fromkeys(BOTH, "RUNNING"), kv=kv)


def test_a_job_that_succeeds_returns_ok_prints_each_change_once_and_is_recorded_once(watch):
    started = {**state("chief:0", "running", "c1"), **state("worker:0", "running", "c2")}
    done = {**started, **state("chief:0", "succeeded", "c1"), **state("worker:0", "succeeded", "c2"),
            **outcome("chief:0"), **outcome("worker:0")}
    w = watch([Step("ACCEPTED"), Step("ACCEPTED"), Step(containers=dict.fromkeys(BOTH, "REQUESTED")),
               running(**started), running(**started), Step(containers=dict.fromkeys(BOTH, "SUCCEEDED"), kv=done),
               Step("FINISHED", "SUCCEEDED")], java_log="/tmp/java-client.log")
    assert w.code == EXIT_OK
    assert w.job_lines() == [
        "ACCEPTED  containers requested 0 running 0 finished 0 | ",
        "RUNNING   containers requested 2 running 0 finished 0 | chief:0=- worker:0=-",
        "RUNNING   containers requested 0 running 2 finished 0 | chief:0=running worker:0=running",
        "RUNNING   containers requested 0 running 0 finished 2 | chief:0=succeeded worker:0=succeeded"]
    assert w.phases("chief:0") == ["-", "running", "done"]
    assert w.lines[-1] == f"{APP} FINISHED SUCCEEDED"
    assert "FAILED" not in w.text and "Java log" not in w.text
    assert w.yarn.kv[contract.CLIENT_KEY] == b"watching"  # the supervisors wait for acks only when it is there
    assert w.yarn.kv[contract.ack_key("chief", 0)] == w.yarn.kv[contract.ack_key("worker", 0)] == b"1"
    [record] = w.records
    assert (record["state"], record["final_status"], record["exit_code"], record["how"]) == \
        ("FINISHED", "SUCCEEDED", EXIT_OK, "ended")
    assert record["tasks"]["chief:0"]["outcome"] == "succeeded" and record["traceback"] is None
    assert history.read(APP, record["spec"]["history_dir"]) == record


def test_failed_tasks_print_their_traceback_once_and_the_record_keeps_the_first(watch):
    first = outcome("worker:0", TRACEBACK)
    both = {**first, **outcome("chief:0", "RuntimeError: a worker was lost")}
    w = watch([running(), running(**first), running(**first), running(**both),
               Step("FINISHED", "FAILED", diagnostics="chief failed")], java_log="/tmp/java-client.log")
    assert w.code == EXIT_FAILED
    assert w.lines.count(f"task worker:0 FAILED:\n{TRACEBACK}") == 1
    assert w.lines.count("task chief:0 FAILED:\nRuntimeError: a worker was lost") == 1
    assert w.yarn.kv[contract.ack_key("worker", 0)] == b"1"  # the failing supervisor may exit: it was heard
    assert "diagnostics:" not in w.text  # the tracebacks said why
    assert w.lines[-2:] == [f"{APP} FINISHED FAILED", "this client's Java log: /tmp/java-client.log"]
    [record] = w.records
    assert (record["final_status"], record["exit_code"]) == ("FAILED", EXIT_FAILED)
    assert record["traceback"] == f"worker:0: {TRACEBACK}"
    assert {n: t["outcome"] for n, t in record["tasks"].items()} == {"chief:0": "failed", "worker:0": "failed"}


def test_an_application_that_fails_without_a_task_outcome_shows_yarns_diagnostics(watch):
    w = watch([running(), Step("FAILED", "FAILED", diagnostics="AM container exited with code 1\n")])
    assert w.code == EXIT_FAILED
    assert w.lines[-2:] == [f"{APP} FAILED FAILED",
                            f"diagnostics: AM container exited with code 1\nsee: tfoy logs {APP}"]
    [record] = w.records
    assert record["diagnostics"] == "AM container exited with code 1" and record["exit_code"] == EXIT_FAILED


def test_a_task_that_fails_and_succeeds_after_a_restart_makes_the_job_succeed(watch):
    failed, recovered = outcome("worker:0", TRACEBACK), outcome("worker:0")
    w = watch([running(**failed), running(**failed), running(**recovered), Step("FINISHED", "SUCCEEDED")])
    assert w.code == EXIT_OK
    assert w.lines.count(f"task worker:0 FAILED:\n{TRACEBACK}") == 1
    assert "task worker:0 succeeded after a restart (the failure above was recovered from)" in w.lines
    [record] = w.records
    assert record["tasks"]["worker:0"]["outcome"] == "succeeded" and record["exit_code"] == EXIT_OK


def test_an_application_killed_from_outside_fails_and_is_recorded_killed(watch):
    w = watch([running(**outcome("chief:0")), Step("KILLED", "KILLED", diagnostics="Application killed by user.")])
    assert w.code == EXIT_FAILED and w.yarn.kills == 0
    assert w.lines[-2:] == [f"{APP} KILLED KILLED", f"diagnostics: Application killed by user.\nsee: tfoy logs {APP}"]
    [record] = w.records
    assert (record["state"], record["final_status"], record["exit_code"]) == ("KILLED", "KILLED", EXIT_FAILED)
    assert {n: t["outcome"] for n, t in record["tasks"].items()} == {"chief:0": "succeeded", "worker:0": "killed"}


def test_an_interrupted_watch_raises_and_records_the_job_killed(watch):
    with pytest.raises(KeyboardInterrupt):  # submit kills the application and returns EXIT_INTERRUPTED
        watch([running(**outcome("worker:0", TRACEBACK))], interrupt_at=2)
    [record] = watch.records
    assert (record["state"], record["final_status"], record["exit_code"]) == ("KILLED", "KILLED", EXIT_INTERRUPTED)
    assert record["how"] == "the client was interrupted (the application is killed)"
    assert record["traceback"] == f"worker:0: {TRACEBACK}"


@pytest.mark.parametrize(("steps", "still_requested", "connects"), [
    ([Step("ACCEPTED")], "?", 0),  # never RUNNING: no AM to ask which containers it waits for
    ([Step(containers={"chief:0": "RUNNING", "worker:0": "REQUESTED"})], "1", 1),
], ids=["never-running", "one-container-not-granted"])
def test_the_allocation_timeout_kills_the_application_and_names_what_it_waited_for(watch, steps, still_requested,
                                                                                    connects):
    w = watch(steps, timeouts={"allocation": 30}, queue="research")
    assert w.code == EXIT_FAILED and w.yarn.kills == 1 and w.yarn.connects == connects
    assert 30 < w.clock.now <= 31  # gave up at the first poll past the timeout, not before
    how = (f"allocation timeout: not every container was granted within 30s ({still_requested} still requested, "
           f"queue research); application killed")
    assert w.lines[-1] == how
    [record] = w.records
    assert (record["how"], record["exit_code"], record["state"]) == (how, EXIT_FAILED, "KILLED")


def test_the_job_timeout_kills_a_job_that_runs_too_long(watch):
    w = watch([running()], timeouts={"job": 10})
    assert w.code == EXIT_FAILED and w.yarn.kills == 1 and 10 < w.clock.now <= 11
    how = "job timeout: still running after 10s (timeouts.job); killed"
    assert w.lines[-1] == how and [r["how"] for r in w.records] == [how]


def test_an_am_not_answering_yet_is_connected_to_on_a_later_poll(watch):
    w = watch([Step(am="starting"), Step(am="starting"), running(), Step("FINISHED", "SUCCEEDED")])
    assert w.code == EXIT_OK and w.yarn.connects == 3
    assert w.yarn.kv[contract.CLIENT_KEY] == b"watching"


def test_a_kv_that_goes_away_with_the_am_ends_the_watch_by_the_final_report(watch):
    """The AM's key-value store ends with the AM, while YARN's report may say RUNNING a little longer: reads and
    the acknowledgement fail then, and the watch goes on to the report that says how the job ended."""
    failed = outcome("worker:0", TRACEBACK)
    w = watch([running(), Step(containers=dict.fromkeys(BOTH, "RUNNING"), kv=failed, am="going"),
               Step(am="gone"), Step(am="gone"), Step("FINISHED", "FAILED")])
    assert w.code == EXIT_FAILED
    assert w.lines.count(f"task worker:0 FAILED:\n{TRACEBACK}") == 1
    assert contract.ack_key("worker", 0) not in w.yarn.kv  # its write failed; the loop went on
    assert w.job_lines()[-1] == "RUNNING   containers requested 0 running 0 finished 0 | "  # the AM gone
    [record] = w.records
    assert record["traceback"] == f"worker:0: {TRACEBACK}" and record["tasks"]["worker:0"]["outcome"] == "failed"
    assert record["final_status"] == "FAILED"
