"""Job history on HDFS: `<history_dir>/<app_id>.json`, one file per job, written when the watching client sees it end.

Why: YARN forgets finished applications (yarn.resourcemanager.max-completed-applications) and the AM's key-value
store, where the tasks' outcomes and progress live, ends with the AM. The client that watched the job saw all of
it: the spec, each task's outcome and attempts, the metrics over the epochs, the failing traceback. It writes that
once, whatever the end (success, failure, kill, timeout, Ctrl-C), beside then renamed into place, so a reader never
sees half a record. A detached submit (`--detach`) has no watching client and leaves no record.

A history folder that cannot be written never fails the job: the message names the folder once.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from typing import Any

from tfnode import progress
from tfnode.contract import OUTCOME_OK, failure_detail
from yarn_app.errors import TfoyError

log = logging.getLogger(__name__)

FORMAT = 1
SECRET = "(secret)"


def history_dir(configured: str | None = None, user: str | None = None) -> str:
    """The history folder as a URI: the spec's `history_dir` (home-relative by default), or another user's default
    one (`tfoy history --user U`)."""
    from hdfs_io.paths import absolute_uri

    if user:
        return absolute_uri(f"/user/{user}/.tfoy/history")
    return absolute_uri(configured or ".tfoy/history")


@dataclass
class JobRecord:
    """What the watching client learns about a job, turned into the history file when it ends."""

    app_id: str
    spec: dict[str, Any]
    user: str
    started: float = field(default_factory=time.time)
    tasks: dict[str, dict[str, Any]] = field(default_factory=dict)
    traceback: str | None = None

    @classmethod
    def for_spec(cls, app_id: str, spec: Any, user: str) -> JobRecord:
        data = spec.to_dict()
        data["env"] = {k: SECRET if k in spec.security.secret_env else v for k, v in data.get("env", {}).items()}
        return cls(app_id, data, user)

    def observe(self, prog: Any) -> None:
        """Takes in one snapshot (job_view.Progress): task states, containers, progress, outcomes."""
        for name, task in prog.tasks.items():
            entry = self.tasks.setdefault(name, {"outcome": None, "containers": [], "progress": None})
            if task.container and task.container not in entry["containers"]:
                entry["containers"].append(task.container)
            if task.progress:
                entry["progress"] = task.progress
            if task.outcome is not None:
                ok = task.outcome == OUTCOME_OK
                entry["outcome"] = "succeeded" if ok else "failed"
                if not ok and self.traceback is None:
                    self.traceback = f"{name}: {failure_detail(task.outcome)}"
        for cid, (name, message) in prog.failed_containers.items():
            entry = self.tasks.setdefault(name, {"outcome": None, "containers": [], "progress": None})
            if cid not in entry["containers"]:
                entry["containers"].append(cid)
            entry.setdefault("failed_containers", {})[cid] = message

    def finish(self, state: str, final_status: str, exit_code: int, diagnostics: str = "",
               how: str = "") -> dict[str, Any]:
        ended = time.time()
        tasks = {}
        for name, entry in sorted(self.tasks.items()):
            snap = entry.get("progress") or {}
            tasks[name] = {"outcome": entry["outcome"] or ("killed" if state == "KILLED" else "unknown"),
                           "attempts": max(1, len(entry["containers"])), "containers": entry["containers"],
                           "failed_containers": entry.get("failed_containers", {}),
                           "metrics": snap.get("metrics", {}), "epochs": snap.get("history", []),
                           "last_progress": progress.describe(snap) if snap else ""}
        return {"format": FORMAT, "app_id": self.app_id, "name": self.spec.get("name"), "user": self.user,
                "queue": self.spec.get("queue"), "state": state, "final_status": final_status,
                "exit_code": exit_code, "how": how, "started": self.started, "ended": ended,
                "duration_s": round(ended - self.started, 1), "tasks": tasks, "traceback": self.traceback,
                "diagnostics": diagnostics.strip(), "logs": f"tfoy logs {self.app_id}", "spec": self.spec}


def write(record: dict[str, Any], folder: str) -> str | None:
    """Publishes the record as `<folder>/<app_id>.json` (hidden temporary, then rename); returns its URI, or None
    (with one warning naming the folder) when the folder cannot be written."""
    from hdfs_io import fs
    from hdfs_io.publish import publish_bytes

    try:
        fs.makedirs(folder)
        return publish_bytes(f"{folder}/{record['app_id']}.json", json.dumps(record, indent=1).encode())
    except (OSError, ValueError) as e:
        log.warning("job history of %s not written: %s is not writable (%s); the job itself is unaffected",
                    record.get("app_id"), folder, e)
        return None


class HistoryRecordError(TfoyError, ValueError):
    """A file in the history folder that is not a record this version can show (hand-edited, truncated, another
    tool's), named with what is wrong."""


# what `tfoy status`, `tfoy history` and the pages rely on: required keys, and optional ones' types
REQUIRED = {"app_id": str, "state": str, "final_status": str}
OPTIONAL = {"tasks": dict, "duration_s": (int, float), "ended": (int, float), "started": (int, float)}
TEXTS = ("name", "user", "queue", "how", "traceback", "diagnostics", "logs")  # each a string or null
TASK_KEYS = {"outcome": (str, type(None)), "attempts": int, "last_progress": str, "metrics": dict, "epochs": list}


def parse(data: bytes, path: str) -> dict[str, Any]:
    """A record from its file's bytes, with the keys `tfoy status` and the pages rely on."""
    try:
        record = json.loads(data)
    except ValueError as e:
        raise HistoryRecordError(f"{path}: not a tfoy history record (not JSON: {e})") from None
    if not isinstance(record, dict):
        raise HistoryRecordError(f"{path}: not a tfoy history record (a JSON {type(record).__name__})")
    wrong = [k for k, kind in REQUIRED.items() if not isinstance(record.get(k), kind)]
    wrong += [k for k, kind in OPTIONAL.items() if k in record and not isinstance(record[k], kind)]
    wrong += [k for k in TEXTS if record.get(k) is not None and not isinstance(record[k], str)]
    if isinstance(tasks := record.get("tasks", {}), dict):
        for name, task in tasks.items():
            if not isinstance(task, dict):
                wrong.append(f"tasks.{name}")
                continue
            wrong += [f"tasks.{name}.{k}" for k, kind in TASK_KEYS.items()
                      if k in task and not isinstance(task[k], kind)]
            if isinstance(task.get("epochs"), list) and not all(isinstance(e, dict) for e in task["epochs"]):
                wrong.append(f"tasks.{name}.epochs")
    if wrong:
        raise HistoryRecordError(f"{path}: not a tfoy history record (missing or mistyped: {', '.join(wrong)})")
    return record


def read(app_id: str, folder: str) -> dict[str, Any] | None:
    from hdfs_io import fs

    path = f"{folder}/{app_id}.json"
    try:
        data = fs.read_bytes(path)
    except FileNotFoundError:
        return None
    return parse(data, path)


def list_records(folder: str, since: float | None = None) -> tuple[list[dict[str, Any]], list[str]]:
    """(records newest first, problems): a file that does not parse is named among the problems and skipped."""
    from hdfs_io import fs

    if not fs.exists(folder):
        return [], []
    records, problems = [], []
    for info in fs.ls(folder):
        name = info.uri.rsplit("/", 1)[1]
        if not name.endswith(".json") or name.startswith("."):
            continue
        try:
            record = parse(fs.read_bytes(info.uri), info.uri)
        except (HistoryRecordError, OSError) as e:
            problems.append(f"skipped {e}")
            continue
        if since is None or record.get("ended", 0) >= since:
            records.append(record)
    records.sort(key=lambda r: r.get("ended", 0), reverse=True)
    return records, problems


def parse_since(text: str) -> float:
    """`--since`: a duration back from now (`30m`, `12h`, `7d`) or a date (`2026-11-30`, ISO 8601) → epoch seconds."""
    from datetime import datetime

    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    if text[-1:] in units and text[:-1].replace(".", "", 1).isdigit():
        return time.time() - float(text[:-1]) * units[text[-1]]
    try:
        return datetime.fromisoformat(text).timestamp()
    except ValueError:
        raise ValueError(f"--since {text!r}: give a duration (30m, 12h, 7d) or a date (2026-11-30)") from None


def summary_line(record: dict[str, Any]) -> str:
    ended = time.strftime("%Y-%m-%d %H:%M", time.localtime(record.get("ended", 0)))
    failed = [n for n, t in record.get("tasks", {}).items() if t.get("outcome") == "failed"]
    return (f"{record['app_id']}  {ended}  {record.get('state', '?'):8s} {record.get('final_status', '?'):9s} "
            f"{record.get('duration_s', 0):7.0f}s  {record.get('user', '?'):10s} {record.get('name', '?')}"
            + (f"  failed: {', '.join(failed)}" if failed else ""))
