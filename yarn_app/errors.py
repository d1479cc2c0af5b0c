"""What `tfoy` fails with, and the exit codes a scheduler (Airflow, Oozie) acts on.

Exit codes: 0 every task succeeded; 1 the job failed (a task raised, a barrier / allocation / job timeout, killed);
2 bad input (spec, entry point, paths, cluster limits, unreachable daemons) found before anything was submitted;
130 interrupted (the application is killed first: Ctrl-C never leaves an orphan). Which exception is which exit
code is one table, in the CLI (yarn_app.cli.EXIT_CODES).
"""

from __future__ import annotations

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT, EXIT_INTERRUPTED = 0, 1, 2, 130


class TfoyError(Exception):
    """Base of the errors yarn_app raises itself (the spec, the cluster's answers)."""


class UnknownApplicationError(TfoyError, LookupError):
    """An application id the ResourceManager does not know (never submitted, or forgotten since)."""


class AccessDeniedError(TfoyError, PermissionError):
    """The cluster refused the current user something (HDFS permissions, YARN ACLs); the message names what and
    whom, as Hadoop's own "Permission denied: user=…, access=…, inode=…" does."""
