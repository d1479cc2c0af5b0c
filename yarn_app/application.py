"""JobSpec → skein.ApplicationSpec: one skein Service per role, each running `python -m tfnode.yarn.bootstrap`.

Pure translation (no cluster access), so it is unit-tested: resources (gpus → `yarn.io/gpu`), files (the env
archive PUBLIC where every node may read it, the project code, the user's files), env (TFOY_JOB for the
bootstrap, PYTHONPATH), restarts.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass

import skein

from hdfs_io.paths import absolute_uri
from tfnode.contract import (
    CODE_LINK,
    CONTAINER_MODULE,
    ENV_LINK,
    JOB_ENV,
    ROLE_ENV,
    SECRETS_FILE,
    SIDE_ROLES,
    JobRuntime,
)
from tfnode.keras_compat import keras_env
from yarn_app.spec import JobSpec

MASTER_MEMORY_MIB = 512


@dataclass(frozen=True)
class Shipping:
    """What the containers get besides the spec: the Python to run and the project code archive."""

    code_zip: str  # local path (skein uploads it) or hdfs:// URI
    env_archive: str | None = None  # hdfs:// URI of the env archive (None: python is installed on the nodes)
    # PUBLIC (cached by each NodeManager across applications) only where every NodeManager may read the archive: a
    # PUBLIC resource that is not o+r with o+x on every folder above it (a 0700 HDFS home) fails the container
    env_public: bool = True
    python: str | None = None  # interpreter on the nodes, when no archive is shipped
    python_in_archive: str = "bin/python3.11"
    # local JSON of the spec's secret env values (0600; skein uploads it into the application's 0700 folder on HDFS)
    secrets_file: str | None = None


def job_runtime(spec: JobSpec) -> JobRuntime:
    tf_roles = spec.tf_roles
    return JobRuntime(
        entry_point=spec.entry_point,
        args=list(spec.args),
        roles=tf_roles,
        strategy=spec.effective_strategy,
        barrier_timeout=spec.timeouts.barrier,
        progress_timeout=spec.timeouts.progress,
        restartable=any(spec.roles[r].max_restarts > 0 for r in tf_roles),
        gpus={r: s.gpus for r, s in spec.roles.items() if s.gpus},
        # as the submitting user means them (relative to /user/<submitter> on the defaultFS, as with `hdfs dfs`):
        # the tasks hand them to TF's own APIs, which take fully qualified URIs
        model_dir=_qualified(spec.model_dir),
        export_dir=_qualified(spec.export_dir),
        log_dir=_qualified(spec.log_dir),
    )


def _qualified(path: str | None) -> str | None:
    return absolute_uri(path) if path else None


def other_filesystems(spec: JobSpec, ship: Shipping) -> list[str]:
    """The filesystems besides the defaultFS that the job names (inputs, model/export/log dirs, files, the env
    archive): on a Kerberized cluster the tasks need a delegation token for each, obtained at submission."""
    from hdfs_io.paths import HADOOP_SCHEMES, default_fs, split_uri

    home = default_fs().rstrip("/")
    found: list[str] = []
    for path in filter(None, [*(p for _, p in spec.task_paths()), ship.env_archive]):
        uri = absolute_uri(path)
        scheme, authority, _ = split_uri(uri)
        fs_uri = f"{scheme}://{authority}"
        if scheme in HADOOP_SCHEMES and fs_uri != home and fs_uri not in found:
            found.append(fs_uri)
    return found


def build_application_spec(spec: JobSpec, ship: Shipping, secure: bool = False) -> skein.ApplicationSpec:
    """secure: a Kerberized cluster, where YARN enforces ACLs (under simple authentication anyone can claim to be
    anyone, so they would only get in the way)."""
    runtime = job_runtime(spec).encode()
    files: dict[str, skein.File] = {CODE_LINK: skein.File(source=ship.code_zip, type="archive")}
    # Localized archives are shared by every container of the app on a node (the env archive, PUBLIC, by every
    # app): a task writing __pycache__ into them raced YARN's own `find` in another container's launch script,
    # which failed that container ("find: ...pyc.<n>: No such file or directory" under `set -e`).
    env = {"PYTHONPATH": f"{CODE_LINK}:.", "PYTHONUNBUFFERED": "1", "PYTHONDONTWRITEBYTECODE": "1",
           "TF_CPP_MIN_LOG_LEVEL": "1", JOB_ENV: runtime}
    if ship.env_archive:
        files[ENV_LINK] = skein.File(source=ship.env_archive, type="archive",
                                     visibility="public" if ship.env_public else "application")
        python = f"./{ENV_LINK}/{ship.python_in_archive}"
        env["LD_LIBRARY_PATH"] = f"./{ENV_LINK}/lib"
    elif ship.python:
        python = ship.python
    else:
        raise ValueError("python_env: neither an env archive nor a python on the nodes")
    for name, source in spec.files.items():
        kind = "archive" if source.endswith((".zip", ".tar.gz", ".tgz")) else "file"
        files[name] = skein.File(source=source, type=kind)
    env.update(keras_env(spec.keras))  # before spec.env: an explicit TF_USE_LEGACY_KERAS there wins
    # secrets stay out of the environment YARN writes into every launch script (aggregated with the logs)
    env.update({k: v for k, v in spec.env.items() if k not in spec.security.secret_env})
    if ship.secrets_file:
        files[SECRETS_FILE] = skein.File(source=ship.secrets_file, type="file", visibility="application")

    services = {}
    for role, rs in spec.roles.items():
        if rs.instances <= 0:
            continue
        role_env = {**env, ROLE_ENV: role}
        if rs.gpus == 0:
            role_env["CUDA_VISIBLE_DEVICES"] = ""  # CPU task: never touch a GPU another task was granted
        services[role] = skein.Service(
            resources=skein.Resources(memory=rs.memory, vcores=rs.vcores, gpus=rs.gpus),
            instances=rs.instances,
            files=files,
            env=role_env,
            script=f"exec {shlex.quote(python)} -m {CONTAINER_MODULE}",
            max_restarts=rs.max_restarts,
            allow_failures=role in SIDE_ROLES,
            node_label=rs.node_label or "",
        )
    sec = spec.security
    acls = skein.ACLs(enable=secure, view_users=sec.view_acls, modify_users=sec.modify_acls, ui_users=sec.view_acls)
    return skein.ApplicationSpec(
        name=spec.name,
        queue=spec.queue,
        tags=set(spec.tags) | {"tfoy"},
        services=services,
        file_systems=other_filesystems(spec, ship),
        acls=acls,
        master=skein.Master(resources=skein.Resources(memory=MASTER_MEMORY_MIB, vcores=1)),
        max_attempts=1,
    )
