"""What a submit ships beside the job spec: the Python environment (a cached archive on HDFS, or a Python on the
nodes), the project's code zip, and the secret env values.

Why apart: it is the one step of a submit that touches HDFS and the local disk (yarn_app.env_archive packs and
uploads, yarn_app.code_zip zips); yarn_app.application turns its result (a Shipping) into skein's spec without
touching either.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

from tfnode import contract
from yarn_app import env_archive
from yarn_app.application import Shipping
from yarn_app.code_zip import build_code_zip
from yarn_app.spec import JobSpec


def prepare_shipping(spec: JobSpec, workdir: Path, hdfs_client=None) -> Shipping:
    """Env archive (cached, uploaded once) + project code zip + the secret env values, if any.

    Parameters
    ----------
    spec : the job spec (its python_env and security.secret_env sections).
    workdir : the submit's private temp folder: the code zip and the secrets file are written there.
    hdfs_client : an hdfs_native client, to upload the env archive and see whether a given one is public.
    """
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
