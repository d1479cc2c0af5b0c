"""Submit, watch, status, logs, kill: what `tfoy` does, returning the exit codes a scheduler (Airflow, Oozie) can
trust (yarn_app.errors: 0 succeeded, 1 failed, 2 bad input before anything was submitted, 130 interrupted)."""

from __future__ import annotations

import concurrent.futures
import contextlib
import json
import logging
import os
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from tfnode import contract
from yarn_app import cluster, env_archive, history, live
from yarn_app.application import Shipping, build_application_spec
from yarn_app.code_zip import build_code_zip
from yarn_app.errors import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, UnknownApplicationError
from yarn_app.spec import JobSpec

log = logging.getLogger(__name__)

FINAL_STATES = ("FINISHED", "FAILED", "KILLED")
DRIVER_START_TIMEOUT_S = 60
POLL_S = 1.0
CLAIM_WAIT_S = 600.0  # a first submit ships the env (minutes when it is packed for the first time)
CLAIM_POLL_S = 1.0
JAVA_LOGS_KEPT = 20


def say(text: str) -> None:
    """Progress for people and for pipes (a scheduler's log tails it live)."""
    print(text, flush=True)


def java_log_path(keep: int = JAVA_LOGS_KEPT) -> Path:
    """A fresh file for this client's Java driver log in ~/.tfoy/logs (the newest `keep` are kept): Hadoop's and
    skein's INFO lines stay out of what people and schedulers read; the path is printed when a job fails."""
    folder = Path(os.environ.get("TFOY_STATE_DIR", Path.home() / ".tfoy")) / "logs"
    folder.mkdir(parents=True, exist_ok=True)
    for old in sorted(folder.glob("java-client-*.log"), key=lambda p: p.stat().st_mtime)[:-keep or None]:
        old.unlink(missing_ok=True)
    return folder / f"java-client-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}.log"


def default_java_log() -> Path | None:
    """Where this process's Java driver logs: a file of its own, or stderr (None) with `tfoy -v`."""
    return None if log.isEnabledFor(logging.DEBUG) else java_log_path()


def start_skein(timeout: float = DRIVER_START_TIMEOUT_S, principal: str | None = None, keytab: str | None = None,
                java_log: Path | None | bool = True):
    """A skein client (its Java driver), bounded in time; the RM is probed first so a dead RM is named. On a
    Kerberized cluster the driver logs in from the keytab if given, else uses the ticket cache (KRB5CCNAME).
    java_log: the driver's log file (True: default_java_log(); None: stderr)."""
    import skein

    cluster.check_reachable(cluster.rm_address(), "ResourceManager", "yarn.resourcemanager.address")
    pool = concurrent.futures.ThreadPoolExecutor(1)
    if java_log is True:
        java_log = default_java_log()
    kwargs: dict = {"principal": principal, "keytab": keytab} if keytab else {}
    kwargs["log"] = str(java_log) if java_log else None
    krb5_conf = os.environ.get("KRB5_CONFIG")
    if krb5_conf:  # MIT's tools read KRB5_CONFIG, Java only its own property
        options = os.environ.get("SKEIN_DRIVER_JAVA_OPTIONS", "").split()
        kwargs["java_options"] = [*options, f"-Djava.security.krb5.conf={krb5_conf.split(':')[0]}"]
    try:
        client = pool.submit(skein.Client, **kwargs).result(timeout=timeout)
    except concurrent.futures.TimeoutError:
        where = f" (its log: {java_log})" if java_log else ""
        raise cluster.ClusterError(f"the skein driver did not start within {timeout:.0f}s{where}") from None
    finally:
        pool.shutdown(wait=False)
    return client


def prepare_shipping(spec: JobSpec, workdir: Path, hdfs_client=None) -> Shipping:
    """Env archive (cached, uploaded once) + project code zip + the secret env values, if any."""
    import dataclasses

    return dataclasses.replace(_python_shipping(spec, workdir, hdfs_client),
                               secrets_file=write_secrets(spec, workdir))


def write_secrets(spec: JobSpec, workdir: Path) -> str | None:
    """security.secret_env values as a 0600 file in the submit's private temp folder (see application.py)."""
    secret = {k: spec.env[k] for k in spec.security.secret_env}
    if not secret:
        return None
    path = workdir / contract.SECRETS_FILE
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(secret, f)
    return str(path)


def _python_shipping(spec: JobSpec, workdir: Path, hdfs_client=None) -> Shipping:
    code_zip = build_code_zip(workdir / "tfoy_code.zip")
    pe = spec.python_env
    if pe.archive is None:
        return Shipping(code_zip=str(code_zip), python=pe.python)
    if pe.archive == "auto":
        archive = env_archive.ensure_env_archive(tuple(pe.exclude), client=hdfs_client, shared=pe.shared)
        return Shipping(code_zip=str(code_zip), env_archive=archive.hdfs_uri, env_public=archive.public,
                        python_in_archive=archive.python_relpath)
    from hdfs_io.paths import absolute_uri, split_uri

    uri = absolute_uri(pe.archive)
    public = True
    if hdfs_client is not None and split_uri(uri)[0] != "file":
        public = env_archive.hdfs_path_is_public(hdfs_client, split_uri(uri)[2])
    return Shipping(code_zip=str(code_zip), env_archive=uri, env_public=public)


@dataclass
class TaskView:
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
    report = client.application_report(app_id)
    prog = Progress(app_id, str(report.state), str(report.final_status), cluster.tracking_url(app_id),
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
    return [contract.task_name(r, i) for r, s in spec.roles.items() for i in range(s.instances)]


def connect_when_running(client, app_id: str):
    import skein

    try:
        return client.connect(app_id, wait=False)
    except skein.exceptions.ApplicationNotRunningError:
        return None


def watch(client, app_id: str, spec: JobSpec, out: Callable[[str], None] = say, java_log: Path | None = None) -> int:
    """Shows progress until the application ends; prints each failing task's traceback; returns the exit code.
    Whatever the end (also Ctrl-C), the job's record goes to its history folder (yarn_app.history)."""
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
    login = kerberos.login(spec.security.principal, spec.security.keytab) if kerberos.enabled() else None
    try:
        return _submit_logged_in(spec, detach, out, reattach_tag, on_app_id, namenode(default_fs()), login)
    finally:
        if login:
            login.close()


def _submit_logged_in(spec: JobSpec, detach: bool, out: Callable[[str], None], reattach_tag: str | None,
                      on_app_id: Callable[[str], None] | None, hdfs_client, login) -> int:
    cluster.check_against_cluster(spec)
    if reattach_tag and reattach_tag.lower() not in {t.lower() for t in spec.tags}:
        spec.tags = [*spec.tags, reattach_tag]
    with tempfile.TemporaryDirectory(prefix="tfoy-submit-") as tmp:
        java_log = default_java_log()
        client = start_skein(principal=login and login.principal, keytab=login and login.keytab, java_log=java_log)
        app_id = None
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
            out(f"tracking URL: {cluster.tracking_url(app_id)}")
            if detach:
                return EXIT_OK
            return watch(client, app_id, spec, out, java_log=java_log)
        except KeyboardInterrupt:
            if app_id:
                client.kill_application(app_id)
                out(f"interrupted: killed {app_id}")
            return EXIT_INTERRUPTED
        except BaseException:
            if app_id and not detach:  # this client was the one enforcing the job's limits: never leave it running
                client.kill_application(app_id)
                out(f"the client failed while watching: killed {app_id}")
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
    claim = f"{runs}/{name}--{tag.lower()}"
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
                        raise cluster.ClusterError(f"{claim}: another submit of {name} (tag {tag}) still holds this "
                                                   f"run after {wait_s:.0f}s") from None
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
        cluster.set_lifetime(app_id, spec.timeouts.job)
    except cluster.ClusterError as e:
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


def logs(app_id: str, task: str | None = None, timeout: float = 120) -> dict[str, str]:
    """Aggregated container logs ({yarn container id: text}) from `yarn logs` (the Hadoop 3 log format, which
    skein's Hadoop-2 reader cannot read), optionally only the container(s) that ran one task."""
    proc = subprocess.run(["yarn", "logs", "-applicationId", app_id], capture_output=True, text=True,
                          timeout=timeout)
    if proc.returncode != 0 and "Container: " not in proc.stdout:
        raise cluster.ClusterError(f"yarn logs -applicationId {app_id} failed: {proc.stderr.strip()[-500:]}")
    all_logs = parse_yarn_logs(proc.stdout)
    if task is None:
        return all_logs
    marker = f"{contract.TASK_BANNER} {task} "
    return {cid: text for cid, text in all_logs.items() if marker in text}


def kill(app_id: str) -> None:
    client = start_skein()
    try:
        with _known_application(app_id):
            client.kill_application(app_id)
    finally:
        client.close()
