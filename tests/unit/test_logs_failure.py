"""How `tfoy logs` reports a failed `yarn logs`: Hadoop's own refusal line (user, access, path) without the Java
stack trace around it, and the last lines of anything else."""

from __future__ import annotations

from yarn_app import cluster_checks
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
