"""How `tfoy logs` reports a failed `yarn logs`: Hadoop's own refusal line (user, access, path) without the Java
stack trace around it, and the last lines of anything else; and how it waits for an application that has just
ended until its NodeManagers have uploaded every log (a fake `yarn` on PATH plays the CLI here; the real one is
used by the integration tests that read a finished job's logs)."""

from __future__ import annotations

import os
import stat
import time

import pytest

from yarn_app import client, cluster_checks
from yarn_app.client import _logs_failure
from yarn_app.errors import AccessDeniedError

DENIED = """\
Permission denied: user=tfoy-other, access=EXECUTE, inode="/tmp/logs/root":root:supergroup:drwxrwx---
\tat org.apache.hadoop.hdfs.server.namenode.FSPermissionChecker.check(FSPermissionChecker.java:661)
\tat org.apache.hadoop.ipc.Server$Handler.run(Server.java:3279)

Can not find any log file matching the pattern: [ALL] for the application: application_1_0001
Can not find the logs for the application: application_1_0001 with the appOwner: root
"""


def test_a_refusal_names_the_user_the_access_and_the_path_without_the_stack_trace():
    e = _logs_failure("application_1_0001", DENIED)
    assert isinstance(e, AccessDeniedError) and isinstance(e, PermissionError)
    assert str(e) == ('the logs of application_1_0001 are not readable: Permission denied: user=tfoy-other, '
                      'access=EXECUTE, inode="/tmp/logs/root":root:supergroup:drwxrwx---')


def test_anything_else_is_a_cluster_error_with_its_last_lines():
    e = _logs_failure("application_1_0002", "Exception in thread main\n\tat x.y(Z.java:1)\nUnable to get state\n")
    assert type(e) is cluster_checks.ClusterError
    assert str(e) == ("yarn logs -applicationId application_1_0002 failed: Exception in thread main | "
                      "Unable to get state")


FAKE_YARN = """#!/bin/sh
# `yarn application -status`: the log aggregation status comes from the next line of statuses.txt
if [ "$1" = application ]; then
  n=$(cat "$DIR/calls" 2>/dev/null || echo 0); echo $((n + 1)) > "$DIR/calls"
  status=$(sed -n "$((n + 1))p" "$DIR/statuses.txt"); [ -n "$status" ] || status=$(tail -n 1 "$DIR/statuses.txt")
  printf 'Application Report : \\n\\tState : %s\\n\\tLog Aggregation Status : %s\\n' "$STATE" "$status"
  exit 0
fi
[ -z "$HANG" ] || exec sleep "$HANG"
printf 'Container: container_1_0001_01_000002 on localhost_1\\ntfoy task worker:1 started\\n'
"""


@pytest.fixture
def fake_yarn(tmp_path, monkeypatch):
    script = tmp_path / "yarn"
    script.write_text(FAKE_YARN)
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("DIR", str(tmp_path))
    monkeypatch.setattr(client, "AGGREGATION_POLL_S", 0.05)

    def play(state: str, *statuses: str) -> None:
        monkeypatch.setenv("STATE", state)
        (tmp_path / "statuses.txt").write_text("\n".join(statuses) + "\n")
    play.calls = lambda: int((tmp_path / "calls").read_text())
    return play


def test_an_application_that_has_just_ended_is_read_once_its_logs_are_all_uploaded(fake_yarn):
    fake_yarn("FINISHED", "NOT_START", "RUNNING", "RUNNING", "SUCCEEDED")
    found = client.logs("application_1_0001", task="worker:1", timeout=30)
    assert fake_yarn.calls() == 4
    assert list(found) == ["container_1_0001_01_000002"]


@pytest.mark.parametrize("state, status", [("RUNNING", "RUNNING"), ("FINISHED", "DISABLED"),
                                           ("KILLED", "TIME_OUT"), ("FAILED", "FAILED")])
def test_a_running_application_or_a_final_aggregation_status_is_not_waited_for(fake_yarn, state, status):
    fake_yarn(state, status)
    assert client.logs("application_1_0001", timeout=30)
    assert fake_yarn.calls() == 1


def test_aggregation_that_does_not_end_in_time_is_an_error_naming_the_status(fake_yarn):
    fake_yarn("FAILED", "RUNNING_WITH_FAILURE")
    expected = r"application_1_0001 are still being aggregated \(log aggregation status RUNNING_WITH_FAILURE\) after 1"
    with pytest.raises(cluster_checks.ClusterError, match=expected):
        client.logs("application_1_0001", timeout=1)
    assert fake_yarn.calls() > 3


def test_yarn_logs_that_does_not_answer_is_an_error_within_the_timeout(fake_yarn, monkeypatch):
    """The defect: `yarn logs` hanging (its NameNode down) raised subprocess.TimeoutExpired, a traceback."""
    fake_yarn("FINISHED", "RUNNING", "SUCCEEDED")
    monkeypatch.setenv("HANG", "30")
    monkeypatch.setattr(client, "LOGS_MIN_S", 0.5)
    started = time.monotonic()
    with pytest.raises(cluster_checks.ClusterError, match=r"yarn logs -applicationId application_1_0001 did not "
                                                          r"answer within 2 s"):
        client.logs("application_1_0001", timeout=2)
    assert time.monotonic() - started < 5
