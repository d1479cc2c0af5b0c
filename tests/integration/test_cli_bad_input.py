"""`tfoy` against the real cluster with bad input: a clear message naming the thing, exit 2, nothing submitted,
and an answer in bounded time (issue 13's defects, each failed before its fix)."""

from __future__ import annotations

import os
import shutil
import socket
import sys
import time
import uuid
from pathlib import Path

import pytest
import yaml

from hdfs_io import fs
from hdfs_io.paths import absolute_uri
from tests.conftest import run_cli

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
TFOY = str(Path(sys.executable).parent / "tfoy")
TOY = ROOT / "examples" / "toy_train.py"


def closed_port() -> int:
    """A local port nobody listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def spec_file(tmp_path: Path, **changes) -> tuple[Path, str]:
    name = f"tfoy-bad-{uuid.uuid4().hex[:8]}"
    spec = {"name": name, "entry_point": "toy_train:main", "files": {"toy_train.py": str(TOY)},
            "roles": {"worker": {"instances": 1, "memory": 512}}, "python_env": {"python": sys.executable},
            "timeouts": {"allocation": 60, "barrier": 60, "job": 120}, **changes}
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path, name


def no_app_named(skein_client, name: str) -> bool:
    states = ["NEW", "NEW_SAVING", "SUBMITTED", "ACCEPTED", "RUNNING", "FINISHED", "FAILED", "KILLED"]
    return not [a for a in skein_client.get_applications(states=states) if a.name == name]


def test_unreachable_namenode_is_named_within_seconds(tmp_path, hadoop_conf, skein_client):
    """The defect: with fs.defaultFS on a closed port, `tfoy submit` had not answered after 75 s."""
    conf = tmp_path / "conf"
    shutil.copytree(hadoop_conf, conf)
    port = closed_port()
    core = (conf / "core-site.xml").read_text()
    default_fs = next(v for v in core.split("<value>")[1:] if v.startswith("hdfs://")).split("<")[0]
    (conf / "core-site.xml").write_text(core.replace(default_fs, f"hdfs://localhost:{port}"))
    spec, name = spec_file(tmp_path)
    started = time.monotonic()
    done = run_cli(TFOY, "submit", str(spec), check=False, timeout=90, env={**os.environ, "HADOOP_CONF_DIR": str(conf)})
    took = time.monotonic() - started
    assert done.returncode == 2, done
    assert f"localhost:{port}" in done.stderr and "not reachable" in done.stderr, done.stderr
    assert took < 45, f"took {took:.0f}s"
    assert no_app_named(skein_client, name)


def test_an_input_on_another_namenode_is_asked_of_that_namenode(tmp_path, hdfs_tmp, skein_client):
    """The defect: inputs were looked up on the defaultFS whatever their authority, so an input on a NameNode that
    is down passed the check when the same path existed on the default one."""
    fs.makedirs(f"{hdfs_tmp}/data")
    port = closed_port()
    spec, name = spec_file(tmp_path, inputs=[f"hdfs://localhost:{port}{hdfs_tmp}/data"])
    done = run_cli(TFOY, "submit", str(spec), check=False, timeout=90)
    assert done.returncode == 2 and f"localhost:{port}" in done.stderr, done
    assert no_app_named(skein_client, name)
    missing_file = f"{absolute_uri(hdfs_tmp)}/lib.py"
    spec, name = spec_file(tmp_path, files={"toy_train.py": str(TOY), "lib.py": missing_file})
    done = run_cli(TFOY, "submit", str(spec), check=False, timeout=90)
    assert done.returncode == 2 and f"files.lib.py: {missing_file} does not exist" in done.stderr, done
    assert no_app_named(skein_client, name)


@pytest.mark.parametrize("changes, message", [
    ({"timeouts": {"barrier": float("nan")}}, "timeouts.barrier: must be a positive number of seconds, got nan"),
    ({"timeouts": {"job": float("inf")}}, "timeouts.job: must be a positive number of seconds, got inf"),
    ({"files": {"toy_train.py": "/nowhere/toy_train.py"}}, "files.toy_train.py: /nowhere/toy_train.py does not"),
    ({"env": {"PYTHONPATH": "/opt/mine"}}, "env.PYTHONPATH: set by tfoy in every container"),
    ({"tags": ["t" * 101]}, "tags[0]: YARN takes tags of 1 to 100 characters"),
    # these were found only in the running tasks (s3a://), or raised a raw ValueError after shipping (viewfs:///)
    ({"model_dir": "s3a://bucket/m"}, "model_dir: s3a://bucket/m: tfoy reads and writes file://, hdfs:// and viewfs://"),
    ({"export_dir": "viewfs:///exports/m"}, "export_dir: viewfs:///exports/m: no authority, and the defaultFS"),
    ({"history_dir": "gs://bucket/h"}, "history_dir: gs://bucket/h: tfoy reads and writes"),
    ({"roles": {"worker": {"instances": 1, "memory": 512, "gpus": 1}}},
     "roles.worker.gpus: 1 asked, but this cluster has no GPU resource type"),
    # skein refused these with a raw ValueError (exit 1), after the code zip was built and the env shipped
    ({"files": {"toy_train.py": str(TOY), "sub/helper.py": str(TOY)}}, "files.sub/helper.py: a file name in the"),
    ({"roles": {"worker": {"instances": 2**31, "memory": 512}}}, "roles.worker.instances: must be <= 2147483647"),
    ({"python_env": {"archive": "none", "python": ""}}, "python_env.python: empty"),
])
def test_bad_specs_exit_2_before_anything_is_submitted(tmp_path, skein_client, changes, message):
    spec, name = spec_file(tmp_path, **changes)
    done = run_cli(TFOY, "submit", str(spec), check=False, timeout=60)
    assert done.returncode == 2 and message in done.stderr, done
    assert "Traceback" not in done.stderr
    assert no_app_named(skein_client, name)


@pytest.mark.parametrize("name, content, message", [
    ("env.tar.gz", b"not a tarball", "is not a .tar.gz file (it starts b'not a ta')"),
    ("env.tar.gz", b"PK\x03\x04 zip bytes", "is not a .tar.gz file"),  # YARN picks the unpacker by the name
    ("env.pex", b"\x1f\x8b gzip bytes", ": YARN unpacks only .tar.gz, .tgz, .zip, .jar, .tar files"),
    ("env.tar.gz", b"", "is empty"),
    ("env.tar.gz", None, "is a folder; give a packed env"),
])
def test_an_env_archive_yarn_cannot_unpack_exits_2_before_submission(tmp_path, hdfs_tmp, skein_client, name, content,
                                                                     message):
    """The defect: the job was submitted and failed in every container ("Download and unpack failed"), exit 1."""
    archive = f"{absolute_uri(hdfs_tmp)}/{name}"
    if content is None:
        fs.makedirs(archive)
    else:
        fs.write_bytes(archive, content)
    spec, name = spec_file(tmp_path, python_env={"archive": archive})
    done = run_cli(TFOY, "submit", str(spec), check=False, timeout=60)
    assert done.returncode == 2 and f"python_env.archive: {archive}{'' if message[0] == ':' else ' '}{message}" in \
        done.stderr, done
    assert no_app_named(skein_client, name)


def test_a_bad_reattach_tag_exits_2_before_the_run_is_claimed(tmp_path, skein_client):
    from yarn_app import env_archive

    spec, name = spec_file(tmp_path)
    done = run_cli(TFOY, "submit", str(spec), "--reattach", "runé-1", check=False, timeout=60)
    assert done.returncode == 2 and "--reattach 'runé-1': YARN takes tags of printable ASCII characters only" in \
        done.stderr and "Traceback" not in done.stderr, done
    runs = env_archive.hdfs_env_dir().rsplit("/", 1)[0] + "/runs"
    assert not [f for f in (fs.ls(runs) if fs.exists(runs) else []) if name in f.uri]
    assert no_app_named(skein_client, name)


@pytest.mark.parametrize("command", ["status", "kill", "logs"])
def test_unknown_or_malformed_application_ids(command, skein_client):
    # status also looks in the job history for an id YARN does not know: an empty history folder here
    history = ["--history-dir", f"/tmp/tfoy-test/no-history-{uuid.uuid4().hex[:6]}"] if command == "status" else []
    unknown = run_cli(TFOY, command, "application_1_0001", *history, check=False, timeout=90)
    assert unknown.returncode == 2 and "Traceback" not in unknown.stderr, unknown
    if command != "logs":  # `yarn logs` says it in its own words
        assert "application_1_0001: no such application on the ResourceManager" in unknown.stderr
    for bad_id in ("nonsense", "application_1234567890123_99999999999999999999", "application_99999999999999999999_1"):
        bad = run_cli(TFOY, command, bad_id, check=False, timeout=30)  # the out-of-range ones: an empty DriverError
        assert bad.returncode == 2 and f"'{bad_id}' is not a YARN application id" in bad.stderr, bad


def test_reattach_never_takes_another_users_application(skein_client, hdfs):
    """Before, `--reattach TAG` (and the Airflow retry) matched name and tag only: another user's application with
    the same tag made the run "succeed" without training."""
    import skein

    from yarn_app import client

    other, name, tag = "tfoy-other-user", f"tfoy-reattach-{uuid.uuid4().hex[:8]}", f"run-{uuid.uuid4().hex[:8]}"
    hdfs.mkdirs(f"/user/{other}", create_parent=True)
    hdfs.set_owner(f"/user/{other}", owner=other)
    saved = os.environ.get("HADOOP_USER_NAME")
    os.environ["HADOOP_USER_NAME"] = other  # skein's driver (a JVM) submits as this user with simple auth
    try:
        theirs = skein.Client()
    finally:
        if saved is None:
            del os.environ["HADOOP_USER_NAME"]
        else:
            os.environ["HADOOP_USER_NAME"] = saved
    spec = skein.ApplicationSpec(
        name=name, queue="default", tags=[tag],
        services={"sleep": skein.Service(script="sleep 300", resources=skein.Resources(memory=256, vcores=1))},
        master=skein.Master(resources=skein.Resources(memory=512, vcores=1)))
    app_id = theirs.submit(spec)
    try:
        assert skein_client.application_report(app_id).user == other
        assert client.find_active(skein_client, name, tag) is None
        assert client.find_active(skein_client, name, tag, user=other) == app_id
    finally:
        theirs.kill_application(app_id)
        theirs.close()
