"""A running job as the client sees it: YARN's application report and containers, plus what each task's
supervisor wrote to the AM's key-value store (tfnode.contract: state, progress, outcome).

Why apart: the same snapshot is printed by `tfoy submit` while it watches, returned by `tfoy status` (and its
`--json`), and taken into the job's history (yarn_app.history.JobRecord.observe); only reading, never writing.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field

from tfnode import contract
from yarn_app import cluster_checks, live
from yarn_app.spec import JobSpec

log = logging.getLogger(__name__)

FINAL_STATES = ("FINISHED", "FAILED", "KILLED")


@dataclass
class TaskView:
    """One task (role:index) as its supervisor last reported it in the key-value store."""

    name: str
    state: str = "-"
    outcome: str | None = None
    container: str | None = None
    progress: dict | None = None  # the TF process's latest snapshot (tfnode.progress)


@dataclass
class Progress:
    """One snapshot of a running job, as printed by submit and returned by status."""

    app_id: str
    state: str
    final_status: str
    tracking_url: str
    containers: dict[str, int] = field(default_factory=dict)
    tasks: dict[str, TaskView] = field(default_factory=dict)
    diagnostics: str = ""
    # containers that ended badly, by container id: (task name, YARN's exit message); a task killed with -9 or
    # lost with its node reports no outcome of its own, so this is how the client hears of it
    failed_containers: dict[str, tuple[str, str]] = field(default_factory=dict)

    def line(self, elapsed: float) -> str:
        c = self.containers
        counts = (f"containers requested {c.get('requested', 0)} running {c.get('running', 0)} "
                  f"finished {c.get('finished', 0)}")
        tasks = " ".join(f"{t.name}={t.state}" for t in self.tasks.values())
        return f"[{elapsed:5.0f}s] {self.state:9s} {counts} | {tasks}"

    def to_dict(self) -> dict:
        return {"app_id": self.app_id, "state": self.state, "final_status": self.final_status,
                "tracking_url": self.tracking_url, "containers": self.containers, "diagnostics": self.diagnostics,
                "tasks": {k: {"state": v.state, "phase": live.task_phase(v), "outcome": v.outcome,
                              "container": v.container, "progress": v.progress} for k, v in self.tasks.items()}}


def _kv_tasks(kv_items: dict[str, bytes], expected: list[str]) -> dict[str, TaskView]:
    tasks = {n: TaskView(n) for n in expected}
    for (role, i), raw in contract.parse_task_keys(kv_items, contract.STATE_PREFIX).items():
        name = contract.task_name(role, i)
        state = json.loads(raw)
        task = tasks.setdefault(name, TaskView(name))
        task.state, task.container = state.get("state", "?"), state.get("container")
    for (role, i), raw in contract.parse_task_keys(kv_items, contract.PROGRESS_PREFIX).items():
        name = contract.task_name(role, i)
        try:
            tasks.setdefault(name, TaskView(name)).progress = json.loads(raw)
        except ValueError:
            log.debug("unreadable progress of %s:%d", role, i)
    for (role, i), raw in contract.parse_task_keys(kv_items, contract.OUTCOME_PREFIX).items():
        name = contract.task_name(role, i)
        tasks.setdefault(name, TaskView(name)).outcome = raw.decode(errors="replace")
    return tasks


def snapshot(client, app_id: str, app=None, expected: list[str] | None = None) -> Progress:
    """The job now: YARN's report, and while it is RUNNING and `app` (its application client) is given, its
    containers and tasks. `expected` names the tasks to show before their supervisors have written anything.
    An AM that stops answering mid-read leaves containers and tasks empty: the next report says how it ended."""
    report = client.application_report(app_id)
    prog = Progress(app_id, str(report.state), str(report.final_status), cluster_checks.tracking_url(app_id),
                    diagnostics=report.diagnostics or "")
    if app is not None and prog.state == "RUNNING":
        try:
            containers = app.get_containers(states=["WAITING", "REQUESTED", "RUNNING", "SUCCEEDED", "FAILED",
                                                    "KILLED"])
            states = [str(c.state) for c in containers]
            prog.failed_containers = {c.yarn_container_id or c.id: (contract.task_name(c.service_name, c.instance),
                                                                    (c.exit_message or "").strip())
                                      for c in containers if str(c.state) == "FAILED"}
            prog.containers = {"requested": sum(s in ("WAITING", "REQUESTED") for s in states),
                               "running": states.count("RUNNING"),
                               "finished": sum(s in ("SUCCEEDED", "FAILED", "KILLED") for s in states)}
            prog.tasks = _kv_tasks(app.kv.get_prefix(contract.KV_PREFIX), expected or [])
        except Exception as e:  # the AM is going away: the next report says how it ended
            log.debug("application master not answering: %s", e)
    return prog


def expected_task_names(spec: JobSpec) -> list[str]:
    """Every task the spec asks for (role:index), in the spec's order."""
    return [contract.task_name(r, i) for r, s in spec.roles.items() for i in range(s.instances)]
