"""The skein driver (a JVM the client talks to over gRPC) and where its Java log goes.

Why apart: every client command (submit, status, kill) starts one, bounded in time so a hung JVM or a dead
ResourceManager is named instead of waited on; Hadoop's and skein's INFO lines go to a file of this client's own,
so what people and schedulers read is tfoy's lines only (the file's path is printed when a job fails).
"""

from __future__ import annotations

import concurrent.futures
import logging
import os
import time
from pathlib import Path

from yarn_app import cluster_checks

log = logging.getLogger(__name__)

DRIVER_START_TIMEOUT_S = 60
JAVA_LOGS_KEPT = 20


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

    cluster_checks.check_reachable(cluster_checks.rm_address(), "ResourceManager", "yarn.resourcemanager.address")
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
        raise cluster_checks.ClusterError(f"the skein driver did not start within {timeout:.0f}s{where}") from None
    finally:
        pool.shutdown(wait=False)
    return client


def connect_when_running(client, app_id: str):
    """The application client (its AM: containers, key-value store) of a RUNNING application, or None if it is
    not running (yet, or any more): skein refuses to connect to an application that has no AM."""
    import skein

    try:
        return client.connect(app_id, wait=False)
    except skein.exceptions.ApplicationNotRunningError:
        return None
