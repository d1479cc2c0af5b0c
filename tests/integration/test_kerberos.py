"""tfoy on a Kerberized cluster: the embedded cluster's secure mode (an MIT KDC, Kerberos on every daemon, block
access tokens, SASL data transfer, HTTPS), started here with a state folder and ports of its own, beside the
plain cluster the rest of the suite uses.

Everything runs in subprocesses with the secure cluster's environment (HADOOP_CONF_DIR, KRB5_CONFIG, a ticket
cache per user), as a user on an edge node of such a cluster would. Delegation tokens are renewed every
TOKEN_RENEW_S, so the job that runs longer than that proves the ResourceManager keeps them alive.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
TOY = ROOT / "examples" / "toy_train.py"
TFOY = str(Path(sys.executable).parent / "tfoy")
PORT_OFFSET = 200  # beside the plain cluster (0) and a developer's secure one (100)
TOKEN_RENEW_S = 30
USER = os.environ.get("USER") or __import__("getpass").getuser()


class Secure:
    """The running secure cluster: its environment, realm files and helpers to act as one of its users."""

    def __init__(self, state: Path):
        self.state = state
        self.conf = state / "conf"
        self.keytabs = state / "keytabs"
        self.krb5_conf = state / "kerberos" / "krb5.conf"
        self.fs = f"hdfs://localhost:{8020 + PORT_OFFSET}"
        self.rm = f"http://localhost:{8088 + PORT_OFFSET}"

    def env(self, ccache: Path | None = None, **extra: str) -> dict[str, str]:
        env = dict(os.environ, HADOOP_CONF_DIR=str(self.conf), KRB5_CONFIG=str(self.krb5_conf))
        env.update(extra)
        env["KRB5CCNAME"] = f"FILE:{ccache}" if ccache else f"FILE:{self.state / 'no-ticket'}"
        return env

    def kinit(self, user: str, tmp: Path, lifetime: str | None = None) -> Path:
        ccache = tmp / f"cc-{user}-{uuid.uuid4().hex[:6]}"
        cmd = ["kinit", "-kt", str(self.keytabs / f"{user}.keytab"), "-c", f"FILE:{ccache}", f"{user}@TFOY.TEST"]
        if lifetime:
            cmd[1:1] = ["-l", lifetime]
        subprocess.run(cmd, check=True, env=self.env(), timeout=30)
        return ccache

    def python(self, code: str, ccache: Path | None, timeout: float = 180) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                              env=self.env(ccache), timeout=timeout, cwd=ROOT)

    def tfoy(self, *args: str, ccache: Path | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
        return subprocess.run([TFOY, *args], capture_output=True, text=True, env=self.env(ccache), timeout=timeout)

    def applications(self) -> list[dict]:
        import json
        import urllib.request

        with urllib.request.urlopen(f"{self.rm}/ws/v1/cluster/apps", timeout=10) as resp:
            return (json.load(resp).get("apps") or {}).get("app", [])


@pytest.fixture(scope="module")
def secure(tmp_path_factory):
    state = tmp_path_factory.mktemp("secure-hadoop")
    cluster = [sys.executable, str(ROOT / "embedded_hadoop" / "cluster.py")]
    env = dict(os.environ, TFOY_HADOOP_STATE=str(state), TFOY_HADOOP_PORT_OFFSET=str(PORT_OFFSET),
               TFOY_TOKEN_RENEW_INTERVAL_S=str(TOKEN_RENEW_S))
    started = time.monotonic()
    proc = subprocess.run([*cluster, "start", "--secure"], capture_output=True, text=True, env=env, timeout=300)
    if proc.returncode != 0:
        pytest.fail(f"the secure embedded cluster did not start:\n{proc.stdout}\n{proc.stderr}")
    print(f"secure cluster up in {time.monotonic() - started:.1f}s")
    try:
        yield Secure(state)
    finally:
        subprocess.run([*cluster, "stop"], env=env, timeout=120)


@pytest.fixture(scope="module")
def ticket(secure, tmp_path_factory) -> Path:
    return secure.kinit(USER, tmp_path_factory.mktemp("tickets"))


@pytest.fixture(scope="module")
def toy_data(secure, ticket) -> str:
    base = f"/tmp/tfoy-secure/{uuid.uuid4().hex[:8]}"
    proc = secure.python(f"""
        import sys; sys.path.insert(0, {str(TOY.parent)!r})
        import hdfs_io
        from toy_train import write_toy_data
        write_toy_data("{secure.fs}{base}/data", files=4, records=100)
    """, ticket)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return base


# the toy job, after hdfs_io's own reader and writer have run in the container on its delegation tokens
ENTRY = """
import sys
import toy_train
from hdfs_io import datasets, fs


def main(args, ctx):
    toy_train.main(args, ctx)  # first: MultiWorkerMirroredStrategy must be made before any TF op runs
    data = ctx.absolute_path(args[args.index("--data") + 1])
    records = sum(1 for _ in datasets.tfrecord_dataset(fs.glob(data + "/*.tfrecord")))
    fs.write_bytes(f"{ctx.model_dir}/hdfs_io-{ctx.job_name}-{ctx.task_index}.txt", str(records).encode())
"""


def job_spec(tmp_path: Path, base: str, epochs: int = 2, sleep: float = 0.0, **security) -> Path:
    name = f"tfoy-secure-{uuid.uuid4().hex[:8]}"
    entry = tmp_path / "secure_entry.py"
    entry.write_text(ENTRY)
    spec = {
        "name": name, "entry_point": "secure_entry:main",
        "files": {"toy_train.py": str(TOY), "secure_entry.py": str(entry)},
        "args": ["--data", f"{base}/data", "--epochs", str(epochs), "--steps", "3", "--epoch-sleep", str(sleep)],
        "roles": {"chief": {"memory": 1024}, "worker": {"instances": 2, "memory": 1024}},
        "python_env": {"python": sys.executable},
        "timeouts": {"allocation": 240, "barrier": 240, "job": 600},
        "model_dir": f"{base}/{name}/model", "export_dir": f"{base}/{name}/export", "inputs": [f"{base}/data"],
    }
    if security:
        spec["security"] = security
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def test_hdfs_io_and_tf_hdfs_read_and_write_with_a_ticket(secure, ticket):
    proc = secure.python(f"""
        import hdfs_io, tensorflow as tf
        from hdfs_io import fs, paths
        d = "{secure.fs}/user/{USER}/kerberos-{uuid.uuid4().hex[:6]}"
        fs.write_bytes(d + "/a.bin", b"through hdfs-native")
        assert fs.read_bytes(d + "/a.bin") == b"through hdfs-native"
        with tf.io.TFRecordWriter(d + "/r.tfrecord") as w:
            for i in range(500):
                w.write(b"%d" % i)
        n = sum(1 for _ in tf.data.TFRecordDataset(tf.io.gfile.glob(d + "/*.tfrecord")))
        print("user", paths.hadoop_user(), "records", n)
        tf.io.gfile.rmtree(d)
    """, ticket)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"user {USER} records 500" in proc.stdout


def test_without_a_ticket_submit_says_run_kinit_and_submits_nothing(secure, toy_data, tmp_path):
    before = len(secure.applications())
    proc = secure.tfoy("submit", str(job_spec(tmp_path, toy_data)), ccache=None)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert f"run `kinit {USER}@TFOY.TEST`" in proc.stderr and "--keytab" in proc.stderr
    assert len(secure.applications()) == before


def test_an_expired_ticket_is_no_ticket(secure, toy_data, tmp_path):
    ccache = secure.kinit(USER, tmp_path, lifetime="3s")
    time.sleep(5)
    proc = secure.tfoy("submit", str(job_spec(tmp_path, toy_data)), ccache=ccache)
    assert proc.returncode == 2 and "no valid Kerberos ticket" in proc.stderr, proc.stderr


def test_a_keytab_of_another_principal_is_refused_naming_both(secure, toy_data, tmp_path):
    proc = secure.tfoy("submit", str(job_spec(tmp_path, toy_data)), "--principal", f"{USER}@TFOY.TEST",
                       "--keytab", str(secure.keytabs / "tfoy-other.keytab"))
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert f"cannot log in as {USER}@TFOY.TEST from keytab" in proc.stderr and "tfoy-other.keytab" in proc.stderr


def test_a_kdc_that_does_not_answer_is_named(secure, toy_data, tmp_path):
    conf = tmp_path / "krb5.conf"
    conf.write_text(secure.krb5_conf.read_text().replace(f"127.0.0.1:{8288 + PORT_OFFSET}", "127.0.0.1:9"))
    env = secure.env(KRB5_CONFIG=str(conf))
    started = time.monotonic()
    proc = subprocess.run([TFOY, "submit", str(job_spec(tmp_path, toy_data)), "--principal", f"{USER}@TFOY.TEST",
                           "--keytab", str(secure.keytabs / f"{USER}.keytab")], capture_output=True, text=True,
                          env=env, timeout=120)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "127.0.0.1:9" in proc.stderr and time.monotonic() - started < 60


def test_second_user_is_denied_the_first_users_export(secure, ticket, tmp_path):
    other = secure.kinit("tfoy-other", tmp_path)
    private = f"/user/{USER}/private-{uuid.uuid4().hex[:6]}"
    made = secure.python(f"""
        from hdfs_io import fs
        fs.write_bytes("{secure.fs}{private}/1/saved_model.pb", b"model")
        fs.hdfs_client("{secure.fs}").set_permission("{private}", 0o700)
    """, ticket)
    assert made.returncode == 0, made.stderr[-2000:]
    denied = secure.python(f"""
        from hdfs_io import fs
        fs.read_bytes("{secure.fs}{private}/1/saved_model.pb")
    """, other)
    assert denied.returncode != 0
    assert "tfoy-other" in denied.stderr and private in denied.stderr, denied.stderr[-2000:]


def test_mwms_job_on_kerberized_yarn_trains_exports_and_outlives_the_token_renewal(secure, ticket, toy_data,
                                                                                    tmp_path):
    """Ticket cache for the submit; the tasks authenticate with delegation tokens only; the job runs past
    TOKEN_RENEW_S, after which HDFS would refuse an unrenewed token."""
    spec = job_spec(tmp_path, toy_data, epochs=4, sleep=TOKEN_RENEW_S / 2)
    started = time.monotonic()
    proc = secure.tfoy("submit", str(spec), ccache=ticket)
    took = time.monotonic() - started
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert "lifetime" not in proc.stderr, proc.stderr[-2000:]  # timeouts.job given to YARN (its CLI, with the ticket)
    assert took > TOKEN_RENEW_S * 1.5
    name = yaml.safe_load(spec.read_text())["name"]
    listed = secure.python(f"""
        from hdfs_io import fs
        print([f.uri.rsplit("/", 1)[1] for f in fs.ls("{secure.fs}{toy_data}/{name}/export")])
        print(sorted(fs.read_bytes(f.uri).decode() for f in fs.ls("{secure.fs}{toy_data}/{name}/model")
                     if f.uri.rsplit("/", 1)[1].startswith("hdfs_io-")))
    """, ticket)
    assert "'1'" in listed.stdout, listed.stdout + listed.stderr
    assert "['400', '400', '400']" in listed.stdout, listed.stdout  # hdfs_io read every record in each task
    # what a job ships is its owner's: the second user cannot list the env archives (published here as `tfoy
    # submit` publishes a private one, with a stand-in archive: packing the real one takes minutes). The code zip
    # is staged by skein in .skein/<app id> (0700, its Driver's SKEIN_DIR_PERM), gone when the application ends.
    published = secure.python(f"""
        from pathlib import Path
        from hdfs_io import fs
        from yarn_app import env_archive
        archive = Path("{tmp_path}/stand-in.tar.gz")
        archive.write_bytes(b"not a real environment")
        uri = env_archive.hdfs_env_dir(False) + "/stand-in.tar.gz"
        env_archive._ensure_published(uri, lambda: archive, fs.hdfs_client(uri), env_archive.PRIVATE_MODES)
    """, ticket)
    assert published.returncode == 0, published.stderr[-2000:]
    other = secure.kinit("tfoy-other", tmp_path)
    for private in (f"/user/{USER}/.tfoy/envs",):
        denied = secure.python(f"""
            from hdfs_io import fs
            print(fs.ls("{secure.fs}{private}"))
        """, other)
        assert denied.returncode != 0, f"{private} is readable by tfoy-other: {denied.stdout[-500:]}"
        assert "tfoy-other" in denied.stderr and private in denied.stderr, denied.stderr[-2000:]


def test_keytab_submit_from_the_spec_and_its_logs_are_read_by_its_owner_only(secure, ticket, toy_data, tmp_path):
    """The secure NodeManager aggregates container logs to HDFS (through SecureIOUtils, on the libhadoop.so the
    embedded cluster builds); `tfoy logs` reads them with the owner's ticket and is refused to the second user."""
    spec = job_spec(tmp_path, toy_data, principal=f"{USER}@TFOY.TEST", keytab=str(secure.keytabs / f"{USER}.keytab"))
    proc = secure.tfoy("submit", str(spec), ccache=None)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    app_id = re.search(r"(application_\d+_\d+) FINISHED SUCCEEDED", proc.stdout).group(1)
    # straight after the job: aggregation ends a few seconds after the application, and `tfoy logs` waits for it
    logs = secure.tfoy("logs", app_id, "--task", "worker:1", ccache=ticket, timeout=180)
    assert logs.returncode == 0 and "tfoy task worker:1 " in logs.stdout, logs.stdout[-2000:] + logs.stderr[-2000:]
    assert "tfoy task chief:0 " not in logs.stdout  # --task: only that task's container
    denied = secure.tfoy("logs", app_id, ccache=secure.kinit("tfoy-other", tmp_path), timeout=120)
    assert denied.returncode == 1, denied.stdout[-2000:] + denied.stderr[-2000:]
    assert "Permission denied: user=tfoy-other" in denied.stderr and f"/tmp/logs/{USER}" in denied.stderr, \
        denied.stderr[-2000:]
    assert "\tat " not in denied.stderr  # Hadoop's line, not its stack trace


SPARK_JOB = """
import os, sys, json
from pathlib import Path
import pyspark
from pyspark import SparkConf, SparkContext
from tfnode import TFCluster

home = Path(pyspark.__file__).parent
os.environ["PYSPARK_PYTHON"] = sys.executable
os.environ.setdefault("PYSPARK_ARCHIVES_PATH", f"local:{home.parent}")
krb5 = "-Djava.security.krb5.conf=" + os.environ["KRB5_CONFIG"]
conf = (SparkConf().setMaster("yarn").setAppName("tfoy-secure-spark").set("spark.ui.enabled", "false")
        .set("spark.executor.instances", "2").set("spark.executor.cores", "1").set("spark.executor.memory", "1g")
        .set("spark.executor.memoryOverhead", "384m").set("spark.yarn.am.memory", "512m")
        .set("spark.yarn.jars", f"local:{home}/jars/*").set("spark.dynamicAllocation.enabled", "false")
        .set("spark.task.maxFailures", "1").set("spark.driver.extraJavaOptions", krb5)
        .set("spark.executorEnv.PYSPARK_PYTHON", sys.executable)
        .set("spark.executorEnv.HADOOP_CONF_DIR", os.environ["HADOOP_CONF_DIR"]))
sc = SparkContext(conf=conf)
OUT = sys.argv[1]

def map_fun(args, ctx):
    import tensorflow as tf
    from tfnode import TFNode
    feed = TFNode.DataFeed(ctx.mgr, train_mode=True)
    seen = 0
    while not feed.should_stop():
        seen += len(feed.next_batch(50))
    with tf.io.gfile.GFile(f"{args['out']}/node-{ctx.task_index}.json", "w") as f:  # TF's hdfs:// on tokens
        f.write(json.dumps({"seen": seen}))

try:
    cluster = TFCluster.run(sc, map_fun, {"out": OUT}, 2, 0, input_mode=TFCluster.InputMode.SPARK,
                            reservation_timeout=180)
    cluster.train(sc.parallelize([[i] for i in range(1000)], 4), feed_timeout=120)
    cluster.shutdown(timeout=120)
    import hdfs_io
    from hdfs_io import fs
    print("SEEN", sum(json.loads(fs.read_bytes(f"{OUT}/node-{i}.json"))["seen"] for i in range(2)))
finally:
    sc.stop()
"""


def test_spark_mode_on_kerberized_yarn_feeds_and_writes_hdfs_with_tokens(secure, ticket, tmp_path):
    script = tmp_path / "spark_job.py"
    script.write_text(SPARK_JOB)
    out = f"{secure.fs}/user/{USER}/spark-secure-{uuid.uuid4().hex[:6]}"
    proc = subprocess.run([sys.executable, str(script), out], capture_output=True, text=True, cwd=ROOT,
                          env=secure.env(ticket, SPARK_LOCAL_IP="127.0.0.1"), timeout=600)
    assert proc.returncode == 0 and "SEEN 1000" in proc.stdout, proc.stdout[-2000:] + proc.stderr[-5000:]
