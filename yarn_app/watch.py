"""Watching a submitted job until it ends: progress lines, each failing task's traceback, the exit code, and the
job's history record.

Why apart: the watching client is what enforces a job's limits (allocation and job timeouts: it kills the
application) and the only one that sees every task's outcome before the AM's key-value store goes away with the
AM; `tfoy submit` and the Airflow operator reach it through yarn_app.client.submit.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path

from tfnode import contract
from yarn_app import history, live
from yarn_app.driver import connect_when_running
from yarn_app.errors import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK
from yarn_app.job_view import FINAL_STATES, expected_task_names, snapshot
from yarn_app.spec import JobSpec

log = logging.getLogger(__name__)

POLL_S = 1.0


def say(text: str) -> None:
    """Progress for people and for pipes (a scheduler's log tails it live)."""
    print(text, flush=True)


def watch(client, app_id: str, spec: JobSpec, out: Callable[[str], None] = say, java_log: Path | None = None) -> int:
    """Shows progress until the application ends; prints each failing task's traceback; returns the exit code.
    Whatever the end (also Ctrl-C), the job's record goes to its history folder (yarn_app.history).

    Parameters
    ----------
    client : a skein client (yarn_app.driver.start_skein).
    app_id : the application to watch.
    spec : its job spec (the tasks to expect, the timeouts, the history folder).
    out : where the lines go (default: stdout, as a live table on a terminal).
    java_log : the skein driver's log file, named when the job did not succeed.

    Returns
    -------
    The exit code (yarn_app.errors): EXIT_OK, EXIT_FAILED, or EXIT_INTERRUPTED if interrupted.
    """
    from hdfs_io.paths import hadoop_user

    record = history.JobRecord.for_spec(app_id, spec, hadoop_user())
    view = live.view_for(out, say)
    outcome = {"code": EXIT_INTERRUPTED, "how": "the client was interrupted (the application is killed)"}
    try:
        code = _watch(client, app_id, spec, out, record, view, outcome)
        outcome["code"] = code
        if code != EXIT_OK and java_log:
            out(f"this client's Java log: {java_log}")
        return code
    finally:
        view.close()
        _record_history(client, app_id, spec, record, outcome)


def _record_history(client, app_id: str, spec: JobSpec, record: history.JobRecord, outcome: dict) -> None:
    try:
        report = client.application_report(app_id)
        state, final, diagnostics = str(report.state), str(report.final_status), report.diagnostics or ""
    except Exception as e:  # noqa: BLE001 - the record is still worth writing
        state, final, diagnostics = "UNKNOWN", "UNDEFINED", f"no application report: {e}"
    if outcome["code"] == EXIT_INTERRUPTED:
        state, final = "KILLED", "KILLED"
    where = history.write(record.finish(state, final, outcome["code"], diagnostics, outcome.get("how", "")),
                          history.history_dir(spec.history_dir))
    if where:
        log.info("job history: %s", where)


def _watch(client, app_id: str, spec: JobSpec, out: Callable[[str], None], record: history.JobRecord,
           view: live.PlainView | live.TerminalView, outcome: dict) -> int:
    started = time.monotonic()
    expected = expected_task_names(spec)
    app = None
    shown: dict[str, str] = {}  # the outcome last seen of each task (a restarted task reports again)
    failures: dict[str, str] = {}
    side_failures: list[str] = []
    seen_containers: set[str] = set()
    last = ""
    all_granted = False
    while True:
        elapsed = time.monotonic() - started
        if app is None and str(client.application_report(app_id).state) == "RUNNING":
            app = connect_when_running(client, app_id)
            if app is not None:
                app.kv[contract.CLIENT_KEY] = b"watching"
        prog = snapshot(client, app_id, app, expected)
        record.observe(prog)
        if prog.state in FINAL_STATES:
            break
        view.update(prog, elapsed)
        for name, task in prog.tasks.items():
            if task.outcome is not None and shown.get(name) != task.outcome:
                shown[name] = task.outcome
                failed = task.outcome != contract.OUTCOME_OK
                if failed and contract.parse_task_name(name)[0] in contract.SIDE_ROLES:
                    side_failures.append(name)
                    out(f"task {name} FAILED (training goes on without it):\n{contract.failure_detail(task.outcome)}")
                elif failed:
                    failures[name] = contract.failure_detail(task.outcome)
                    out(f"task {name} FAILED:\n{failures[name]}")
                elif failures.pop(name, None) is not None:
                    out(f"task {name} succeeded after a restart (the failure above was recovered from)")
                try:
                    app.kv[contract.ack_key(*contract.parse_task_name(name))] = b"1"
                except Exception as e:
                    log.debug("ack %s: %s", name, e)
        for cid, (name, message) in prog.failed_containers.items():
            if cid not in seen_containers:
                seen_containers.add(cid)
                side = contract.parse_task_name(name)[0] in contract.SIDE_ROLES
                out(f"container {cid} of task {name} ended: {message or 'FAILED'}"
                    + (" (training goes on without it)" if side else ""))
                if side and name not in side_failures:
                    side_failures.append(name)
        line = prog.line(elapsed)
        if line[8:] != last[8:]:
            out(line)
            last = line
        c = prog.containers
        all_granted = all_granted or (bool(c) and c.get("requested", 0) == 0)
        if not all_granted and elapsed > spec.timeouts.allocation:
            client.kill_application(app_id)
            outcome["how"] = (f"allocation timeout: not every container was granted within "
                              f"{spec.timeouts.allocation:.0f}s ({c.get('requested', '?')} still requested, queue "
                              f"{spec.queue}); application killed")
            out(outcome["how"])
            return EXIT_FAILED
        if elapsed > spec.timeouts.job:
            client.kill_application(app_id)
            outcome["how"] = f"job timeout: still running after {spec.timeouts.job:.0f}s (timeouts.job); killed"
            out(outcome["how"])
            return EXIT_FAILED
        time.sleep(POLL_S)
    out(f"{app_id} {prog.state} {prog.final_status}")
    outcome["how"] = "ended"
    if prog.final_status == "SUCCEEDED" and not failures:
        if side_failures:
            out(f"training succeeded; failed beside it: {', '.join(sorted(set(side_failures)))} "
                f"(see: tfoy logs {app_id})")
        return EXIT_OK
    if not failures:
        out(f"diagnostics: {prog.diagnostics.strip()}\nsee: tfoy logs {app_id}")
    return EXIT_FAILED
