"""Checks a job spec against the cluster before anything is submitted, naming the spec key that is wrong.

The ResourceManager is probed with a plain TCP connect first: Hadoop's client otherwise retries for
`yarn.resourcemanager.connect.max-wait.ms` (15 min by default) before saying anything.
"""

from __future__ import annotations

import json
import logging
import socket
import subprocess
import urllib.request
from collections.abc import Iterator

from hdfs_io.errors import PathError
from hdfs_io.paths import absolute_uri, hadoop_conf_value, served_uri
from yarn_app.errors import TfoyError
from yarn_app.spec import JobSpec, SpecError

log = logging.getLogger(__name__)
CONNECT_TIMEOUT_S = 3


class ClusterError(TfoyError, RuntimeError):
    """The cluster cannot be reached or cannot run this job."""


GPU_RESOURCE = "yarn.io/gpu"


def yarn_value(key: str, default: str | None = None) -> str | None:
    return hadoop_conf_value(key, site="yarn-site.xml") or default


def rm_address() -> str:
    host = yarn_value("yarn.resourcemanager.hostname", "0.0.0.0")
    return yarn_value("yarn.resourcemanager.address", f"{host}:8032")


def rm_webapp() -> str:
    host = yarn_value("yarn.resourcemanager.hostname", "0.0.0.0")
    return yarn_value("yarn.resourcemanager.webapp.address", f"{host}:8088")


def tracking_url(app_id: str) -> str:
    """YARN's proxy URL of the application (skein's web UI, with the TensorBoard page when there is one)."""
    return f"http://{rm_webapp()}/proxy/{app_id}/"


def set_lifetime(app_id: str, seconds: float, timeout: float = CONNECT_TIMEOUT_S) -> None:
    """Asks the ResourceManager to kill the application `seconds` from now (YARN's application LIFETIME timeout,
    through its REST API), so timeouts.job holds without a client watching (`--detach`, a killed submitter)."""
    from datetime import UTC, datetime, timedelta

    from hdfs_io import kerberos
    from hdfs_io.paths import hadoop_user

    if kerberos.enabled():  # the REST API wants SPNEGO there: YARN's own client, with the ticket, instead
        return _set_lifetime_cli(app_id, seconds)
    expiry = datetime.now(UTC) + timedelta(seconds=seconds)
    body = {"timeout": {"type": "LIFETIME", "expiryTime": expiry.strftime("%Y-%m-%dT%H:%M:%S.000+0000")}}
    url = f"http://{rm_webapp()}/ws/v1/cluster/apps/{app_id}/timeout?user.name={hadoop_user()}"
    request = urllib.request.Request(url, data=json.dumps(body).encode(), method="PUT",
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout):
            return
    except Exception as e:  # noqa: BLE001 - reported as one error naming the call
        raise ClusterError(f"setting the lifetime of {app_id} ({url}): {e}") from e


def _set_lifetime_cli(app_id: str, seconds: float, timeout: float = 60) -> None:
    cmd = ["yarn", "application", "-appId", app_id, "-updateLifetime", str(max(1, int(seconds)))]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise ClusterError(f"setting the lifetime of {app_id} ({' '.join(cmd)}): {e}") from e
    if proc.returncode != 0:
        raise ClusterError(f"setting the lifetime of {app_id} ({' '.join(cmd)}): exit {proc.returncode}: "
                           f"{proc.stderr.strip()[-300:]}")


def check_reachable(address: str, what: str, key: str, timeout: float = CONNECT_TIMEOUT_S) -> None:
    host, _, port = address.rpartition(":")
    try:
        with socket.create_connection((host, int(port)), timeout=timeout):
            return
    except (OSError, ValueError) as e:
        raise ClusterError(f"{what} at {address} ({key}) is not reachable: {e}") from None


def max_allocation() -> tuple[int, int]:
    """(MiB, vcores) a single container may get (yarn-site, Hadoop's defaults otherwise)."""
    mb = int(yarn_value("yarn.scheduler.maximum-allocation-mb", "8192"))
    vcores = int(yarn_value("yarn.scheduler.maximum-allocation-vcores", "4"))
    return mb, vcores


def _walk_queues(info: dict) -> Iterator[str]:
    for q in (info.get("queues") or {}).get("queue", []) or []:
        yield q.get("queueName", "")
        yield from _walk_queues(q)


def queue_names(timeout: float = CONNECT_TIMEOUT_S) -> set[str] | None:
    """Leaf and parent queue names from the RM REST API (None when it cannot be asked)."""
    url = f"http://{rm_webapp()}/ws/v1/cluster/scheduler"
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            info = json.load(r)["scheduler"]["schedulerInfo"]
    except Exception as e:  # any REST trouble: skein's submit still rejects an unknown queue
        log.warning("could not list queues from %s: %s", url, e)
        return None
    names = set(_walk_queues(info))
    if info.get("queueName"):
        names.add(info["queueName"])
    return names


def check_resources(spec: JobSpec, max_mb: int, max_vcores: int) -> None:
    for name, role in spec.roles.items():
        if role.memory > max_mb:
            raise SpecError(f"roles.{name}.memory: {role.memory} MiB is above the cluster's maximum allocation "
                            f"{max_mb} MiB (yarn.scheduler.maximum-allocation-mb)")
        if role.vcores > max_vcores:
            raise SpecError(f"roles.{name}.vcores: {role.vcores} is above the cluster's maximum allocation "
                            f"{max_vcores} (yarn.scheduler.maximum-allocation-vcores)")
        if role.gpus and GPU_RESOURCE not in resource_types():
            raise SpecError(f"roles.{name}.gpus: {role.gpus} asked, but this cluster has no GPU resource type "
                            f"({GPU_RESOURCE} is not in yarn.resource-types, resource-types.xml)")


def resource_types() -> set[str]:
    """YARN's countable resources besides memory and vcores (resource-types.xml, else yarn-site.xml)."""
    value = hadoop_conf_value("yarn.resource-types", site="resource-types.xml") or yarn_value("yarn.resource-types")
    return {t.strip() for t in (value or "").split(",") if t.strip()}


def check_hdfs_paths(spec: JobSpec) -> None:
    """Every path resolves to a filesystem tfoy serves (an `s3a://` model_dir would fail only in the running
    tasks); inputs, files on HDFS and a given env archive must exist, each on its own filesystem (an input on
    another NameNode is asked of that NameNode, through hdfs_io.fs: bounded, errors named)."""
    from hdfs_io import fs

    archive = spec.python_env.archive if spec.python_env.archive != "auto" else None
    for key, path in [*spec.task_paths(), ("history_dir", spec.history_dir), ("python_env.archive", archive)]:
        try:
            if path:
                served_uri(path)
        except PathError as e:
            raise SpecError(f"{key}: {e}") from None
    for i, p in enumerate(spec.inputs):
        if not fs.exists(p):
            raise SpecError(f"inputs[{i}]: {absolute_uri(p)} does not exist")
    for name, source in spec.files.items():
        if "://" in source and not fs.exists(source):
            raise SpecError(f"files.{name}: {absolute_uri(source)} does not exist")
    if archive:
        check_archive(archive)


# What YARN's localizer unpacks, by the name's ending (FSDownload.unpack), and the first bytes each must have
_ARCHIVES = {".tar.gz": b"\x1f\x8b", ".tgz": b"\x1f\x8b", ".zip": b"PK\x03\x04", ".jar": b"PK\x03\x04", ".tar": None}


def check_archive(archive: str) -> None:
    """A given env archive is a file YARN can unpack: a missing, empty or corrupt one (or a folder) fails only in
    every container, as "Download and unpack failed", after the job was submitted."""
    from hdfs_io import fs

    uri = absolute_uri(archive)
    try:
        info = fs.stat(uri)
    except FileNotFoundError:
        raise SpecError(f"python_env.archive: {uri} does not exist") from None
    if info.is_dir:
        raise SpecError(f"python_env.archive: {uri} is a folder; give a packed env (.tar.gz or .zip)")
    ending = next((e for e in _ARCHIVES if uri.lower().endswith(e)), None)
    if ending is None:  # YARN would localize it as a plain file, never unpacked
        raise SpecError(f"python_env.archive: {uri}: YARN unpacks only {', '.join(_ARCHIVES)} files")
    with fs.open(uri, "rb") as f:
        head = f.read(512)
    magic = _ARCHIVES[ending]
    fits = head.startswith(magic) if magic else len(head) >= 262 and head[257:262] == b"ustar"
    if not fits:
        what = "empty" if not head else f"not a {ending} file (it starts {head[:8]!r})"
        raise SpecError(f"python_env.archive: {uri} is {what}")


def check_against_cluster(spec: JobSpec) -> None:
    """Everything that can be known before submission; raises SpecError / ClusterError."""
    check_reachable(rm_address(), "ResourceManager", "yarn.resourcemanager.address")
    check_resources(spec, *max_allocation())
    queues = queue_names()
    if queues is not None and spec.queue not in queues:
        raise SpecError(f"queue: {spec.queue!r} does not exist on the cluster (queues: {', '.join(sorted(queues))})")
    check_hdfs_paths(spec)
