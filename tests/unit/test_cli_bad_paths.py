"""`tfoy` on paths and ports it cannot use, and on history files it cannot read: a message naming the thing and
exit 2 (1 for an unreadable record), never a traceback. Each case raised a raw ValueError, OSError or KeyError
before its fix. Nothing here needs a cluster: the paths are refused before any is asked."""

from __future__ import annotations

import json
import socket

import pytest

from hdfs_io.errors import PathError
from hdfs_io.paths import absolute_uri, served_uri
from hdfs_io.serving import pull_latest
from yarn_app import cli, client
from yarn_app.errors import UnknownApplicationError


def run(capsys, *argv: str) -> tuple[int, str]:
    code = cli.main(list(argv))
    return code, capsys.readouterr().err


@pytest.fixture
def no_hadoop_conf(monkeypatch):
    monkeypatch.delenv("HADOOP_CONF_DIR", raising=False)


def test_a_foreign_scheme_or_an_unresolvable_path_is_a_path_error():
    assert served_uri("file:///tmp/x") == "file:///tmp/x"
    with pytest.raises(PathError, match="^s3a://b/m: tfoy reads and writes file://, hdfs:// and viewfs:// only$"):
        served_uri("s3a://b/m")
    with pytest.raises(PathError, match="hdfs:///m: no authority, and the defaultFS 'file:' is not hdfs://"):
        absolute_uri("hdfs:///m", "file://")


@pytest.mark.parametrize("argv, message", [
    (["model", "list", "s3://bucket/models"], "s3://bucket: tfoy reads and writes file://, hdfs:// and viewfs://"),
    (["model", "list", "hdfs:///models/m"], "hdfs:///models/m: no authority, and the defaultFS"),
    (["model", "pull", "s3a://bucket/m", "/tmp/serving"], "s3a://bucket: tfoy reads and writes"),
    (["history", "--history-dir", "gs://bucket/history"], "gs://bucket: tfoy reads and writes"),
])
def test_model_and_history_commands_name_a_path_they_cannot_use(capsys, no_hadoop_conf, argv, message):
    code, err = run(capsys, *argv)
    assert code == 2 and message in err and "Traceback" not in err, err


def export_base(tmp_path) -> str:
    version = tmp_path / "export" / "7"
    version.mkdir(parents=True)
    (version / "saved_model.pb").write_bytes(b"pb")
    (version / "_SUCCESS").write_bytes(b"")
    return f"file://{tmp_path}/export"


def test_a_pull_onto_a_file_is_refused_before_anything_is_copied(capsys, tmp_path):
    base = export_base(tmp_path)
    (tmp_path / "serving").write_text("not a folder")
    code, err = run(capsys, "model", "pull", base, str(tmp_path / "serving"))
    assert code == 2 and f"{tmp_path}/serving: is a file; TF Serving's model_base_path is a folder" in err, err
    with pytest.raises(PathError, match=f"{tmp_path}/serving/m: is under {tmp_path}/serving, which is a file"):
        pull_latest(base, tmp_path / "serving" / "m")
    assert (tmp_path / "serving").read_text() == "not a folder"
    assert pull_latest(base, tmp_path / "fresh" / "m").path == tmp_path / "fresh" / "m" / "7"


def test_an_unwritable_pull_target_names_the_folder_and_the_user(tmp_path, monkeypatch):
    """Root may write anywhere, so the refusal is played through os.access."""
    monkeypatch.setattr("hdfs_io.serving.os.access", lambda path, mode: False)
    with pytest.raises(PathError, match=f"{tmp_path}/ro/m: {tmp_path} is not writable by "):
        pull_latest(export_base(tmp_path), tmp_path / "ro" / "m")
    assert not (tmp_path / "ro").exists()


def test_history_page_on_a_busy_or_impossible_port(capsys, tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        code, err = run(capsys, "history", "--history-dir", f"file://{tmp_path}", "--serve", "--port", str(port))
    assert code == 2 and f"cannot serve the history page on 127.0.0.1:{port}: Address already in use" in err, err
    with pytest.raises(SystemExit) as exited:
        cli.main(["history", "--serve", "--port", "70000"])
    assert exited.value.code == 2 and "not a TCP port (0 to 65535): '70000'" in capsys.readouterr().err


@pytest.mark.parametrize("user", ["../x", "..", "a b", ""])
def test_history_of_another_user_takes_a_user_name_not_a_path(capsys, user):
    """`--user ../x` read /user/../x/.tfoy/history and exited 0."""
    with pytest.raises(SystemExit) as exited:
        cli.main(["history", "--user", user])
    assert exited.value.code == 2 and f"argument --user: not a user name: {user!r}" in capsys.readouterr().err


@pytest.mark.parametrize("content, why", [
    ("{not json", "not JSON"),
    ("[1, 2]", "a JSON list"),
    (json.dumps({"app_id": "application_1_0009", "state": "FINISHED"}), "missing or mistyped: final_status"),
    (json.dumps({"app_id": "application_1_0009", "state": "FINISHED", "final_status": "FAILED",
                 "tasks": {"worker:0": "failed"}}), "missing or mistyped: tasks.worker:0"),
    # these made the history page drop the connection (AttributeError in _plots): checked with the others now
    (json.dumps({"app_id": "application_1_0009", "state": "FINISHED", "final_status": "FAILED", "how": 3,
                 "tasks": {"worker:0": {"epochs": "abc", "metrics": [1], "attempts": "<script>"}}}),
     "missing or mistyped: how, tasks.worker:0.attempts, tasks.worker:0.metrics, tasks.worker:0.epochs"),
])
def test_status_of_a_malformed_history_record_names_the_file(capsys, tmp_path, monkeypatch, content, why):
    """YARN has forgotten the application (played here), so `tfoy status` reads its history record."""
    def forgotten(app_id):
        raise UnknownApplicationError(f"{app_id}: no such application on the ResourceManager")

    monkeypatch.setattr(client, "status", forgotten)
    (tmp_path / "application_1_0009.json").write_text(content)
    code, err = run(capsys, "status", "application_1_0009", "--history-dir", f"file://{tmp_path}")
    path = f"file://{tmp_path}/application_1_0009.json"
    assert code == 1 and f"{path}: not a tfoy history record ({why}" in err and "Traceback" not in err, err
    code, err = run(capsys, "history", "--history-dir", f"file://{tmp_path}")
    assert code == 0 and f"skipped {path}: not a tfoy history record" in err


@pytest.mark.parametrize("task", ["worker", "bogus:1", "worker:x"])
def test_logs_of_a_task_take_a_task_name_before_any_log_is_fetched(capsys, task):
    """`--task worker` fetched every log, then said "no logs for task worker" and exited 1."""
    with pytest.raises(SystemExit) as exited:
        cli.main(["logs", "application_1_0001", "--task", task])
    assert exited.value.code == 2 and "argument --task: not a task name (role:index" in capsys.readouterr().err
