"""`tfoy`: submit / status / logs / kill / history / model, with Hadoop CLI habits (application ids, `--json`, exit
codes): one function per subcommand, one table from error types to exit codes."""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import signal
import sys
from collections.abc import Callable

from hdfs_io.errors import PathError
from hdfs_io.filesystems.hdfs import HadoopConfigError
from hdfs_io.fs import NameNodeUnreachableError
from hdfs_io.kerberos import KerberosError
from tfnode.contract import ROLE_NAMES
from yarn_app import client, job_view, live
from yarn_app.cluster_checks import ClusterError
from yarn_app.errors import (
    EXIT_BAD_INPUT,
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    AccessDeniedError,
    UnknownApplicationError,
)
from yarn_app.history import HistoryRecordError
from yarn_app.spec import SpecError, load_spec

APP_ID = re.compile(r"application_(\d+)_(\d+)")


def is_app_id(text: str) -> bool:
    """YARN's ApplicationId: a long cluster timestamp and an int sequence number (a larger one made the
    ResourceManager's parser fail, and skein answer with an empty DriverError)."""
    m = APP_ID.fullmatch(text)
    return m is not None and int(m.group(1)) < 2**63 and int(m.group(2)) < 2**31


def _user(text: str) -> str:
    """A user name as HDFS homes take it (/user/<name>, `svc$` or `me@REALM` included): not a path that climbs out
    of /user."""
    if not text or "/" in text or text in (".", "..") or any(c.isspace() for c in text):
        raise argparse.ArgumentTypeError(f"not a user name: {text!r}")
    return text


def _task(text: str) -> str:
    """`role:index` of a task that can exist: checked before any log is fetched."""
    role, _, index = text.partition(":")
    if role not in ROLE_NAMES or not index.isdigit():
        raise argparse.ArgumentTypeError(f"not a task name (role:index, role one of {', '.join(sorted(ROLE_NAMES))})"
                                         f": {text!r}")
    return f"{role}:{int(index)}"


def _port(text: str) -> int:
    if not text.isdigit() or int(text) > 65535:
        raise argparse.ArgumentTypeError(f"not a TCP port (0 to 65535): {text!r}")
    return int(text)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="tfoy", description="TensorFlow jobs on YARN and HDFS")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = p.add_subparsers(dest="command", required=True)
    s = sub.add_parser("submit", help="submit a job spec (YAML) and wait for it")
    s.add_argument("spec", help="job spec YAML (see conf/jobs/)")
    s.add_argument("--detach", action="store_true", help="print the application id and return at once")
    s.add_argument("--name", help="application name (overrides name:)")
    s.add_argument("--queue", help="YARN queue (overrides queue:)")
    s.add_argument("--tags", help="comma-separated application tags (override tags:)")
    s.add_argument("--reattach", metavar="TAG",
                   help="if an application of this name carrying TAG is still active (a scheduler's retry of the same "
                        "run), watch it instead of submitting a second copy; otherwise submit with TAG added")
    s.add_argument("--principal", help="Kerberos principal to submit as (security.principal; default: the ticket "
                                       "cache's)")
    s.add_argument("--keytab", help="log in from this keytab instead of the ticket cache (security.keytab)")
    s.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override any spec key, e.g. --set roles.worker.instances=3 (repeatable)")
    st = sub.add_parser("status", help="state of an application and its tasks (ended ones from the job history)")
    st.add_argument("app_id")
    st.add_argument("--json", action="store_true")
    st.add_argument("--history-dir", help="the job history folder (default: ~/.tfoy/history on the defaultFS)")
    h = sub.add_parser("history", help="ended jobs, from the job history on HDFS")
    h.add_argument("--user", type=_user, help="another user's history (/user/USER/.tfoy/history)")
    h.add_argument("--since", help="only jobs ended since: a duration (30m, 12h, 7d) or a date (2026-11-30)")
    h.add_argument("--json", action="store_true")
    h.add_argument("--history-dir", help="the job history folder (default: ~/.tfoy/history on the defaultFS)")
    h.add_argument("--serve", action="store_true", help="serve the history as a web page until interrupted")
    h.add_argument("--host", default="127.0.0.1", help="address the page listens on (--serve)")
    h.add_argument("--port", type=_port, default=8765, help="port of the page (--serve; 0: any free port)")
    lg = sub.add_parser("logs", help="aggregated container logs of a finished application")
    lg.add_argument("app_id")
    lg.add_argument("--task", type=_task, help="only this task, e.g. worker:1")
    k = sub.add_parser("kill", help="kill an application")
    k.add_argument("app_id")
    m = sub.add_parser("model", help="exported SavedModel versions: list on HDFS, pull to TF Serving, prune")
    msub = m.add_subparsers(dest="model_command", required=True)
    ml = msub.add_parser("list", help="complete versions under an HDFS export base")
    ml.add_argument("export_base")
    ml.add_argument("--json", action="store_true")
    mp = msub.add_parser("pull", help="copy the newest complete version into a local TF Serving model_base_path")
    mp.add_argument("export_base")
    mp.add_argument("model_base_path")
    mp.add_argument("--keep", type=int, help="then keep only the newest N local versions")
    mr = msub.add_parser("prune", help="keep only the newest N versions (local folder, or HDFS export base)")
    mr.add_argument("path", help="file:///… (a local TF Serving model_base_path) or hdfs://… (an export base); "
                                 "a path without a scheme is refused, as it could be either")
    mr.add_argument("--keep", type=int, required=True)
    return p


def _prune_target(path: str) -> tuple[str, bool]:
    """(qualified path, is local) for `tfoy model prune`, which deletes: a path without a scheme could be the local
    TF Serving folder (as for `pull`) or an HDFS export base (Hadoop's rule for bare paths), so it is refused."""
    from urllib.parse import urlsplit

    from hdfs_io.paths import HADOOP_SCHEMES, absolute_uri

    scheme = urlsplit(path).scheme
    if scheme == "file":
        return path, True
    if scheme in HADOOP_SCHEMES:
        return absolute_uri(path), False
    if scheme:
        raise ValueError(f"{path}: prune works on file:// (a TF Serving folder) or hdfs:// / viewfs:// paths")
    local = "file://" + os.path.abspath(path)
    remote = absolute_uri(path)
    if remote.startswith("file:"):
        return remote, True  # no Hadoop configuration: a bare path can only be local
    raise ValueError(f"{path}: ambiguous, and prune deletes; say {local} for the local TF Serving folder or "
                     f"{remote} for the export base on HDFS")


def _model(args: argparse.Namespace) -> int:
    """`tfoy model …`: the hand-off to TF Serving (which cannot read HDFS)."""
    from hdfs_io import export, fs, serving
    from hdfs_io.paths import absolute_uri

    if args.model_command in ("list", "pull") and not fs.exists(base := absolute_uri(args.export_base)):
        print(f"tfoy: {base}: no such export base", file=sys.stderr)  # a typo, not a job that exported nothing yet
        return EXIT_BAD_INPUT
    if args.model_command == "list":
        versions = export.list_versions(base)
        if args.json:
            print(json.dumps({"export_base": base, "versions": versions}))
        elif not versions:
            print(f"tfoy: {base}: no complete version (a numbered folder with {export.SUCCESS})", file=sys.stderr)
        for v in [] if args.json else versions:
            print(f"{base}/{v}")
        return EXIT_OK if versions else EXIT_FAILED
    if args.keep is not None and args.keep < 1:
        print(f"tfoy: --keep must be >= 1, not {args.keep}", file=sys.stderr)
        return EXIT_BAD_INPUT
    if args.model_command == "pull":
        result = serving.pull_latest(args.export_base, args.model_base_path, keep=args.keep)
        print(f"{'pulled' if result.pulled else 'already there:'} version {result.version} -> {result.path}")
        return EXIT_OK
    try:
        target, local = _prune_target(args.path)
    except ValueError as e:
        print(f"tfoy: {e}", file=sys.stderr)
        return EXIT_BAD_INPUT
    if not (os.path.isdir(fs.local_path(target)) if local else fs.exists(target)):
        print(f"tfoy: {target}: no such folder", file=sys.stderr)
        return EXIT_BAD_INPUT
    removed = serving.prune_local(fs.local_path(target), args.keep) if local else export.prune_versions(
        target, args.keep)
    print(f"{target}: removed versions {removed}" if removed else f"{target}: nothing to remove")
    return EXIT_OK


def _history(args: argparse.Namespace) -> int:
    from yarn_app import history

    folder = history.history_dir(args.history_dir) if args.history_dir else history.history_dir(user=args.user)
    if args.serve:
        from yarn_app import history_page

        try:
            server = history_page.make_server(folder, args.host, args.port)
        except OSError as e:  # in use, or an address this host does not have
            print(f"tfoy: cannot serve the history page on {args.host}:{args.port}: {e.strerror or e}",
                  file=sys.stderr)
            return EXIT_BAD_INPUT
        host, port = server.server_address[:2]
        print(f"job history of {folder} at http://{host}:{port}/ (Ctrl-C stops)", flush=True)
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            pass
        finally:
            server.server_close()
        return EXIT_OK
    try:
        since = history.parse_since(args.since) if args.since else None
    except ValueError as e:
        print(f"tfoy: {e}", file=sys.stderr)
        return EXIT_BAD_INPUT
    records, problems = history.list_records(folder, since)
    for problem in problems:
        print(f"tfoy: {problem}", file=sys.stderr)
    if args.json:
        print(json.dumps([{k: v for k, v in r.items() if k != "spec"} for r in records], indent=1))
    elif not records:
        print(f"no job history{' since ' + args.since if args.since else ''} in {folder}")
    for r in [] if args.json else records:
        print(history.summary_line(r))
    return EXIT_OK


def _ended_status(app_id: str, folder: str | None, as_json: bool) -> int | None:
    """`tfoy status` of an application YARN no longer runs (or knows): from its history record; None if none."""
    from yarn_app import history

    record = history.read(app_id, history.history_dir(folder))
    if record is None:
        return None
    if as_json:
        print(json.dumps({k: v for k, v in record.items() if k != "spec"}, indent=2))
        return EXIT_OK
    print(f"{app_id} {record['state']} {record['final_status']} (from the job history; ended "
          f"{history.summary_line(record).split('  ')[1]}, {record.get('duration_s', 0):.0f}s)")
    for name, task in record.get("tasks", {}).items():
        print(f"  {name:14s} {task.get('outcome', '?'):9s} attempts {task.get('attempts', '?')}  "
              f"{task.get('last_progress', '')}")
    if record.get("traceback"):
        print(f"traceback:\n{record['traceback']}")
    return EXIT_OK


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt(signal.Signals(signum).name)


def _kill_app_on_signals() -> None:
    """Ctrl-C and SIGTERM (Airflow / Oozie stopping the task) end a waiting submit by killing the application.

    Installed explicitly: a process started in the background by a non-interactive shell inherits SIGINT ignored.
    """
    signal.signal(signal.SIGINT, _interrupt)
    signal.signal(signal.SIGTERM, _interrupt)


def _submit(args: argparse.Namespace) -> int:
    tags = [t for t in (args.tags or "").split(",") if t] or None
    _kill_app_on_signals()
    spec = load_spec(args.spec, name=args.name, queue=args.queue, tags=tags, sets=args.set)
    if args.principal:
        spec.security.principal = args.principal
    if args.keytab:
        spec.security.keytab = os.path.abspath(args.keytab)
    spec.security.validate()
    return client.submit(spec, detach=args.detach, reattach_tag=args.reattach)


def _status(args: argparse.Namespace) -> int:
    try:
        prog = client.status(args.app_id)
    except UnknownApplicationError:
        code = _ended_status(args.app_id, args.history_dir, args.json)
        if code is None:
            raise
        return code
    if prog.state in job_view.FINAL_STATES and (code := _ended_status(args.app_id, args.history_dir,
                                                                      args.json)) is not None:
        return code
    if args.json:
        print(json.dumps(prog.to_dict(), indent=2))
        return EXIT_OK
    print(f"{prog.app_id} {prog.state} {prog.final_status} {prog.tracking_url}")
    for t in prog.tasks.values():
        print(f"  {live.task_line(t)}")
    if prog.diagnostics:
        print(f"diagnostics: {prog.diagnostics.strip()}")
    return EXIT_OK


def _logs(args: argparse.Namespace) -> int:
    found = client.logs(args.app_id, args.task)
    if not found:
        print(f"tfoy: no logs{' for task ' + args.task if args.task else ''} in {args.app_id} "
              "(logs are aggregated when the application ends)", file=sys.stderr)
        return EXIT_FAILED
    for cid, text in sorted(found.items()):
        print(f"===== {cid} =====\n{text}")
    return EXIT_OK


def _kill(args: argparse.Namespace) -> int:
    ended = client.kill(args.app_id)
    print(f"{args.app_id} had already ended ({ended}): nothing to kill" if ended else f"killed {args.app_id}")
    return EXIT_OK


COMMANDS = {"submit": _submit, "status": _status, "logs": _logs, "kill": _kill, "model": _model,
            "history": _history}


def _unreachable_namenode(e: BaseException) -> str:
    return f"{e} (fs.defaultFS in {os.environ.get('HADOOP_CONF_DIR', 'the Hadoop configuration')})"


# Which error is which exit code, and how its message reads: the one table (first match wins). What is not here
# is a bug, shown with its traceback.
EXIT_CODES: list[tuple[type[BaseException], int, Callable[[BaseException], str]]] = [
    (SpecError, EXIT_BAD_INPUT, lambda e: f"bad job spec: {e}"),
    (KerberosError, EXIT_BAD_INPUT, str),
    (NameNodeUnreachableError, EXIT_BAD_INPUT, _unreachable_namenode),
    (PathError, EXIT_BAD_INPUT, str),
    (HadoopConfigError, EXIT_BAD_INPUT, str),
    (UnknownApplicationError, EXIT_BAD_INPUT, str),
    (ClusterError, EXIT_BAD_INPUT, str),  # as for an unreachable ResourceManager
    (AccessDeniedError, EXIT_FAILED, str),
    (HistoryRecordError, EXIT_FAILED, str),
    (FileNotFoundError, EXIT_FAILED, str),
]


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    if args.command in ("status", "logs", "kill") and not is_app_id(args.app_id):
        print(f"tfoy: {args.app_id!r} is not a YARN application id (application_<cluster timestamp>_<number>)",
              file=sys.stderr)
        return EXIT_BAD_INPUT
    try:
        return COMMANDS[args.command](args)
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except Exception as e:
        for kind, code, message in EXIT_CODES:
            if isinstance(e, kind):
                print(f"tfoy: {message(e)}", file=sys.stderr)
                return code
        raise


if __name__ == "__main__":
    sys.exit(main())
