"""Submit, status, logs, kill: what `tfoy` and the Airflow operator call, returning the exit codes a scheduler
(Airflow, Oozie) can trust (yarn_app.errors: 0 succeeded, 1 failed, 2 bad input before anything was submitted, 130
interrupted).

Why this module: it is the client's public surface, and the one place that owns a submit from start to end (the
Kerberos login, the skein driver, the run's claim, the application left running or killed). What it builds on has
a home of its own: the skein driver (yarn_app.driver), what a submit ships (yarn_app.shipping), the job as the
client sees it (yarn_app.job_view) and the watch loop (yarn_app.watch); their public names are re-exported here for
the callers that have always imported them from yarn_app.client.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import subprocess
import tempfile
import time
import urllib.parse
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

from tfnode import contract
from yarn_app import cluster_checks, env_archive
from yarn_app.application import build_application_spec
from yarn_app.driver import connect_when_running, default_java_log, start_skein
from yarn_app.errors import EXIT_INTERRUPTED, EXIT_OK, AccessDeniedError, UnknownApplicationError
from yarn_app.job_view import FINAL_STATES, Progress, TaskView, expected_task_names, snapshot
from yarn_app.shipping import prepare_shipping, write_secrets
from yarn_app.spec import JobSpec
from yarn_app.watch import say, watch

__all__ = [
    "find_active", "submit", "claimed_run", "status", "parse_yarn_logs", "logs", "kill",
    # re-exported from where they live
    "FINAL_STATES", "Progress", "TaskView", "expected_task_names", "snapshot", "prepare_shipping", "write_secrets",
    "watch",
]

log = logging.getLogger(__name__)

CLAIM_WAIT_S = 600.0  # a first submit ships the env (minutes when it is packed for the first time)
CLAIM_POLL_S = 1.0


def find_active(client, name: str, tag: str, user: str | None = None) -> str | None:
    """A not yet finished application of this user (default: the one submitting) with this name and tag (YARN
    stores tags lowercased), or None. Another user's application with the same name and tag is not this run."""
    from hdfs_io.paths import hadoop_user

    user = user or hadoop_user()
    for report in client.get_applications(states=["SUBMITTED", "ACCEPTED", "RUNNING"], name=name):
        if report.user == user and tag.lower() in {t.lower() for t in report.tags}:
            return report.id
    return None


def submit(spec: JobSpec, detach: bool = False, out: Callable[[str], None] = say, reattach_tag: str | None = None,
           on_app_id: Callable[[str], None] | None = None) -> int:
    """Checks, ships and submits the job; unless detached, waits for it (Ctrl-C kills the application).

    reattach_tag: a scheduler's retry of the same run (Airflow, Oozie) passes the same tag; if an application with
    this name and tag is still active, it is watched instead of starting a second copy. on_app_id gets the id as
    soon as it is known (so a scheduler can kill it).
    """
    from hdfs_io import kerberos
    from hdfs_io.fs import hdfs_client as namenode
    from hdfs_io.paths import default_fs

    spec.check_entry_point()
    if reattach_tag is not None:
        spec.add_reattach_tag(reattach_tag)
    login = kerberos.login(spec.security.principal, spec.security.keytab) if kerberos.enabled() else None
    try:
        return _submit_logged_in(spec, detach, out, reattach_tag, on_app_id, namenode(default_fs()), login)
    finally:
        if login:
            login.close()


def _submit_logged_in(spec: JobSpec, detach: bool, out: Callable[[str], None], reattach_tag: str | None,
                      on_app_id: Callable[[str], None] | None, hdfs_client, login) -> int:
    cluster_checks.check_against_cluster(spec)
    with tempfile.TemporaryDirectory(prefix="tfoy-submit-") as tmp:
        java_log = default_java_log()
        client = start_skein(principal=login and login.principal, keytab=login and login.keytab, java_log=java_log)
        app_id = None
        announced = False
        try:
            with claimed_run(spec.name, reattach_tag) if reattach_tag else contextlib.nullcontext():
                app_id = find_active(client, spec.name, reattach_tag) if reattach_tag else None
                if app_id:
                    out(f"re-attaching to {app_id}: {spec.name} with tag {reattach_tag} is still active")
                else:
                    ship = prepare_shipping(spec, Path(tmp), hdfs_client)
                    app_id = _submit(client, spec, ship)
                    _limit_lifetime(app_id, spec, out, detach)
            if on_app_id:
                on_app_id(app_id)
            out(f"application id: {app_id}")
            announced = True
            out(f"tracking URL: {cluster_checks.tracking_url(app_id)}")
            if detach:
                return EXIT_OK
            return watch(client, app_id, spec, out, java_log=java_log)
        except KeyboardInterrupt:
            if app_id:
                client.kill_application(app_id)
                out(f"interrupted: killed {app_id}")
            return EXIT_INTERRUPTED
        except BaseException:
            # never leave behind an application nobody knows of (its id not printed yet) or, watching, the one
            # whose limits this client enforces
            if app_id and (not detach or not announced):
                client.kill_application(app_id)
                out(f"the client failed {'while watching' if announced else 'right after submitting'}: "
                    f"killed {app_id}")
            raise
        finally:
            client.close()


@contextlib.contextmanager
def claimed_run(name: str, tag: str, wait_s: float = CLAIM_WAIT_S) -> Iterator[None]:
    """Holds a run's claim (name + reattach tag) from "is it already active?" until it is submitted, so two
    submits of one run at once (a scheduler's retry while the first still ships its env) make one application:
    the second waits here, then finds the first one active and re-attaches. The claim is a file on HDFS published
    by a rename that does not overwrite (atomic at the NameNode); a claim left by a killed submitter is taken
    over once it is older than wait_s."""
    from hdfs_io import fs

    runs = env_archive.hdfs_env_dir().rsplit("/", 1)[0] + "/runs"
    claim = f"{runs}/{urllib.parse.quote(f'{name}--{tag.lower()}', safe='')}"  # a name may hold "/" or ".."
    fs.makedirs(runs)
    mine = f"{claim}.{uuid.uuid4().hex[:12]}"
    fs.write_bytes(mine, json.dumps({"pid": os.getpid(), "host": socket.gethostname()}).encode())
    deadline = time.monotonic() + wait_s
    try:
        while True:
            try:
                fs.rename(mine, claim)
                break
            except FileExistsError:
                if time.monotonic() > deadline:
                    held = time.time() - fs.stat(claim).mtime
                    if held < wait_s:
                        raise cluster_checks.ClusterError(
                            f"{claim}: another submit of {name} (tag {tag}) still holds this run after {wait_s:.0f}s"
                        ) from None
                    log.warning("%s: taking over a claim left %.0fs ago (its submitter died?)", claim, held)
                    fs.rename(mine, claim, overwrite=True)
                    break
                time.sleep(CLAIM_POLL_S)
    except BaseException:
        fs.delete(mine)
        raise
    try:
        yield
    finally:
        fs.delete(claim)


def _submit(client, spec: JobSpec, ship) -> str:
    """skein's submit, with a tag of this attempt's own: an interrupt during the call (the application may exist by
    then, its id not yet returned) finds the application by that tag and kills it."""
    from hdfs_io import kerberos

    attempt = f"tfoy-submit-{uuid.uuid4().hex[:16]}"
    app_spec = build_application_spec(spec, ship, secure=kerberos.enabled())
    app_spec.tags = {*app_spec.tags, attempt}
    try:
        return client.submit(app_spec)
    except KeyboardInterrupt:
        for report in client.get_applications(states=["NEW", "NEW_SAVING", "SUBMITTED", "ACCEPTED", "RUNNING"],
                                              name=spec.name):
            if attempt in report.tags:
                client.kill_application(report.id)
        raise


def _limit_lifetime(app_id: str, spec: JobSpec, out: Callable[[str], None], detach: bool) -> None:
    """timeouts.job enforced by the ResourceManager too (YARN's application lifetime), not only by this client."""
    try:
        cluster_checks.set_lifetime(app_id, spec.timeouts.job)
    except cluster_checks.ClusterError as e:
        if detach:
            out(f"warning: timeouts.job is not enforced for this detached application: {e}")
        else:
            log.warning("%s; timeouts.job is enforced by this client only", e)


@contextlib.contextmanager
def _known_application(app_id: str) -> Iterator[None]:
    """skein answers an id the ResourceManager does not know with a ValueError; this names it as such."""
    try:
        yield
    except ValueError as e:
        if "Unknown ApplicationId" not in str(e):
            raise
        raise UnknownApplicationError(f"{app_id}: no such application on the ResourceManager") from None


def status(app_id: str) -> Progress:
    client = start_skein()
    try:
        with _known_application(app_id):
            app = None
            if str(client.application_report(app_id).state) == "RUNNING":
                app = connect_when_running(client, app_id)
            return snapshot(client, app_id, app)
    finally:
        client.close()


def parse_yarn_logs(text: str) -> dict[str, str]:
    """`yarn logs` output → {yarn container id: its log files, concatenated}."""
    out: dict[str, list[str]] = {}
    current = None
    for line in text.splitlines():
        if line.startswith("Container: "):
            current = line.split()[1]
            out.setdefault(current, [])
        elif current is not None:
            out[current].append(line)
    return {cid: "\n".join(lines) for cid, lines in out.items()}


# YARN's LogAggregationStatus values that mean the NodeManagers are still uploading
_AGGREGATING = {"NOT_START", "RUNNING", "RUNNING_WITH_FAILURE"}
AGGREGATION_POLL_S = 2.0
LOGS_MIN_S = 10.0  # what reading the aggregated logs gets even when waiting for their aggregation took the rest


def _aggregation_pending(app_id: str, timeout: float) -> str | None:
    """The log aggregation status of an application that has ended but whose logs are not all uploaded yet,
    else None. Right after an application ends, `yarn logs` finds some containers or none ("Can not find any
    log file") until every NodeManager has uploaded; `tfoy logs` then waits rather than print a partial set."""
    try:
        proc = subprocess.run(["yarn", "application", "-status", app_id], capture_output=True, text=True,
                              timeout=timeout)
    except (OSError, subprocess.TimeoutExpired):
        return None  # `yarn logs` itself says what is wrong
    fields = {key.strip(): value.strip() for key, _, value in
              (line.partition(" : ") for line in proc.stdout.splitlines())}
    status = fields.get("Log Aggregation Status", "")
    ended = fields.get("State", "") in FINAL_STATES
    return status if ended and status in _AGGREGATING else None


def logs(app_id: str, task: str | None = None, timeout: float = 120) -> dict[str, str]:
    """Aggregated container logs ({yarn container id: text}) from `yarn logs` (the Hadoop 3 log format, which
    skein's Hadoop-2 reader cannot read), optionally only the container(s) that ran one task. An application
    that has just ended is first waited for until its log aggregation is done; the wait and the reading share
    `timeout` (the reading gets at least LOGS_MIN_S)."""
    deadline = time.monotonic() + timeout
    while (status := _aggregation_pending(app_id, timeout=max(1.0, deadline - time.monotonic()))) is not None:
        if time.monotonic() + AGGREGATION_POLL_S > deadline:
            raise cluster_checks.ClusterError(
                f"the logs of {app_id} are still being aggregated (log aggregation status {status}) after "
                f"{timeout:.0f} s; try again later")
        log.info("waiting for the log aggregation of %s (%s)", app_id, status)
        time.sleep(AGGREGATION_POLL_S)
    try:
        proc = subprocess.run(["yarn", "logs", "-applicationId", app_id], capture_output=True, text=True,
                              timeout=max(LOGS_MIN_S, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        raise cluster_checks.ClusterError(
            f"yarn logs -applicationId {app_id} did not answer within {timeout:.0f} s (with the wait for log "
            "aggregation); is the NameNode holding yarn.nodemanager.remote-app-log-dir up?") from None
    if proc.returncode != 0 and "Container: " not in proc.stdout:
        raise _logs_failure(app_id, proc.stderr)
    all_logs = parse_yarn_logs(proc.stdout)
    if task is None:
        return all_logs
    marker = f"{contract.TASK_BANNER} {task} "
    return {cid: text for cid, text in all_logs.items() if marker in text}


def _logs_failure(app_id: str, stderr: str) -> Exception:
    """What `yarn logs` said, without its Java stack traces: a refusal as AccessDeniedError (Hadoop's own line,
    which names the user, the access and the path), anything else as a ClusterError with its last lines."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip() and not line.strip().startswith("at ")]
    denied = next((line for line in lines if "Permission denied:" in line), None)
    if denied:
        return AccessDeniedError(f"the logs of {app_id} are not readable: {denied[denied.index('Permission'):]}")
    return cluster_checks.ClusterError(f"yarn logs -applicationId {app_id} failed: {' | '.join(lines[-3:])[-800:]}")


def kill(app_id: str) -> str | None:
    """Kills the application; returns None, or the state of one that had already ended ("FAILED/FAILED"): as
    `yarn application -kill`, which says so and exits 0 (the application is not running either way)."""
    client = start_skein()
    try:
        with _known_application(app_id):
            report = client.application_report(app_id)
            if str(report.state) in FINAL_STATES:
                return f"{report.state}/{report.final_status}"
            client.kill_application(app_id)
            return None
    finally:
        client.close()
