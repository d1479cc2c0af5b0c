"""Faults injected into real jobs on the embedded cluster: what tfoy survives, what it loses, what it leaves behind.

Each row is one real fault at a point of a real job (examples/toy_train.py: chief + 2 workers, `model.fit` on
TFRecords from HDFS, BackupAndRestore on HDFS, export), or of a real read: the fault, the outcome expected, the
outcome observed, epochs of training lost (work redone or missing at the end), and what was left behind
(applications not ended, tfoy task processes still alive). A row passes when what was observed is what was
expected and nothing was lost or left. Last line: `RESULT faults_survived=… faults_total=… lost=… orphans=…`.

    python benchmarks/faults.py [--rows worker,chief,...]   # needs ./build.sh hadoop start
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "examples"))

import yaml  # noqa: E402

from hdfs_io import fs  # noqa: E402
from hdfs_io.paths import absolute_uri  # noqa: E402

log = logging.getLogger("faults")
TFOY = str(Path(sys.executable).parent / "tfoy")
TOY = ROOT / "examples" / "toy_train.py"
STATE = Path(os.environ.get("TFOY_HADOOP_STATE", Path.home() / ".tfoy" / "hadoop"))
FINAL = ("FINISHED", "FAILED", "KILLED")
EPOCHS = 6
JOB_TIMEOUT = 420


@dataclass
class Row:
    fault: str
    expected: str
    observed: str = ""
    survived: bool = False
    lost: int = 0
    orphans: int = 0


class Job:
    """A `tfoy submit` running in the background, its output collected line by line."""

    def __init__(self, spec: Path, *extra: str):
        self.proc = subprocess.Popen([TFOY, "submit", str(spec), *extra], stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True)
        self.lines: list[str] = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.append(line)

    @property
    def output(self) -> str:
        return "".join(self.lines)

    def app_id(self, timeout: float = 120) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if m := re.search(r"(?:application id:|re-attaching to) (application_\d+_\d+)", self.output):
                return m.group(1)
            if self.proc.poll() is not None and not self.reader.is_alive():
                break
            time.sleep(0.2)
        raise RuntimeError(f"no application id from tfoy submit:\n{self.output[-2000:]}")

    def wait(self, timeout: float = JOB_TIMEOUT) -> int:
        code = self.proc.wait(timeout)
        self.reader.join(10)
        return code


class Bench:
    def __init__(self) -> None:
        import skein

        self.skein = skein.Client()
        self.base = f"/tmp/tfoy-faults/{uuid.uuid4().hex[:10]}"
        from toy_train import write_toy_data

        write_toy_data(f"{absolute_uri(self.base)}/data", files=4, records=200)

    def spec(self, epochs: int = EPOCHS, sleep: float = 3.0, restarts: dict[str, int] | None = None,
             side: tuple[str, ...] = (), ps: bool = False) -> Path:
        """The toy job: chief + 2 workers (MultiWorkerMirrored), or with `ps` a ParameterServerStrategy job (Keras 2:
        Keras 3 cannot fit under it); `side` adds the evaluator and/or the tensorboard role."""
        name = f"tfoy-fault-{uuid.uuid4().hex[:8]}"
        restarts = restarts or {}
        spec = {
            "name": name, "entry_point": "toy_train:main", "files": {"toy_train.py": str(TOY)},
            "args": ["--data", f"{self.base}/data", "--epochs", str(epochs), "--steps", "3",
                     "--epoch-sleep", str(sleep)],
            "roles": {"chief": {"memory": 1024, "max_restarts": restarts.get("chief", 0)},
                      "worker": {"instances": 2, "memory": 1024, "max_restarts": restarts.get("worker", 0)}},
            "python_env": {"python": sys.executable},
            "timeouts": {"allocation": 240, "barrier": 240, "job": JOB_TIMEOUT},
            "model_dir": f"{self.base}/{name}/model", "export_dir": f"{self.base}/{name}/export",
        }
        for role in side:
            spec["roles"][role] = {"memory": 512, "max_restarts": restarts.get(role, 0)}
        if "tensorboard" in side:
            spec["log_dir"] = f"{self.base}/{name}/logs"
        if ps:
            spec["roles"]["ps"] = {"memory": 1024, "max_restarts": restarts.get("ps", 0)}
            spec["roles"]["chief"]["memory"] = 1536
            spec.update(strategy="parameter_server", keras=2)
            del spec["export_dir"]
        path = Path(f"/tmp/{name}.yaml")
        path.write_text(yaml.safe_dump(spec))
        return path

    def model_dir(self, spec: Path) -> str:
        return absolute_uri(yaml.safe_load(spec.read_text())["model_dir"])

    def wait_epoch(self, spec: Path, timeout: float = 300) -> int:
        """Blocks until the job has finished an epoch (its state.json exists); returns that epoch."""
        state = f"{self.model_dir(spec)}/state.json"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if fs.exists(state):
                return json.loads(fs.read_bytes(state))["epoch"]
            time.sleep(0.5)
        raise RuntimeError(f"no epoch finished within {timeout:.0f}s ({state})")

    def epochs_lost(self, spec: Path) -> int:
        state = f"{self.model_dir(spec)}/state.json"
        done = json.loads(fs.read_bytes(state))["epoch"] if fs.exists(state) else -1
        return (EPOCHS - 1) - done

    def task_pid(self, app_id: str, task: str) -> int:
        app = self.skein.connect(app_id)
        role, index = task.split(":")
        return json.loads(app.kv[f"tfoy/state/{role}/{index}"])["pid"]

    def apps_named(self, spec: Path) -> list:
        name = yaml.safe_load(spec.read_text())["name"]
        states = ["NEW", "NEW_SAVING", "SUBMITTED", "ACCEPTED", "RUNNING", *FINAL]
        return [a for a in self.skein.get_applications(states=states) if a.name == name]

    def orphans(self, spec: Path) -> int:
        """Applications of this row not ended, and tfoy task processes still alive once they have."""
        left = [a for a in self.apps_named(spec) if str(a.state) not in FINAL]
        for a in left:
            self.skein.kill_application(a.id)
        deadline = time.monotonic() + 30  # the NodeManager's kill of a container takes a moment
        while time.monotonic() < deadline and _task_processes():
            time.sleep(1)
        return len(left) + len(_task_processes())


def _task_processes() -> list[int]:
    out = subprocess.run(["pgrep", "-f", "tfnode.yarn.bootstrap|tensorboard.main"], capture_output=True,
                         text=True).stdout
    return [int(p) for p in out.split()]


def _daemon_pid(name: str) -> int:
    return int((STATE / "pids" / f"{name}.pid").read_text())


def restart_daemon(name: str) -> float:
    """kill -9 of an embedded daemon, then the cluster's own start (which starts what is not running)."""
    t = time.monotonic()
    os.kill(_daemon_pid(name), signal.SIGKILL)
    time.sleep(2)
    subprocess.run([sys.executable, str(ROOT / "embedded_hadoop" / "cluster.py"), "start"], check=True,
                   capture_output=True, timeout=300)
    _wait_hdfs_writable(time.monotonic() + 180)
    return time.monotonic() - t


def _wait_hdfs_writable(deadline: float) -> None:
    """Until a write through HDFS goes through: the NameNode still counts a DataNode killed with -9 as live (until
    its heartbeat recheck), so the cluster's readiness check passes before the new DataNode serves."""
    probe = f"{absolute_uri('/tmp/tfoy-faults')}/.probe-{uuid.uuid4().hex[:8]}"
    while True:
        try:
            fs.write_bytes(probe, b"x")
            fs.delete(probe)
            return
        except Exception as e:  # noqa: BLE001 - retried until the deadline, then reported
            if time.monotonic() > deadline:
                raise RuntimeError(f"HDFS not writable again after the restart: {e}") from e
            time.sleep(1)


def _ended_well(bench: Bench, row: Row, spec: Path, job: Job) -> None:
    code = job.wait()
    app_id = job.app_id()
    final = str(bench.skein.application_report(app_id).final_status)
    row.lost = bench.epochs_lost(spec)
    ended = len(re.findall(r"^container \S+ of task \S+ ended", job.output, re.M))
    row.observed = (f"exit {code}, {final}, {EPOCHS - 1 - row.lost}/{EPOCHS - 1} as last epoch, "
                    f"{ended} container(s) ended badly")
    row.survived = code == 0 and final == "SUCCEEDED"


def kill_task(task: str, restarts: tuple[str, ...] = (), ps: bool = False, what: str = "",
              expected: str = "succeeds, resumes from the last backup") -> Callable[[Bench], Row]:
    """kill -9 of one task mid-training; `restarts` are the roles given max_restarts 1 (default: the task's own)."""

    def run(bench: Bench) -> Row:
        row = Row(f"kill -9 of {task} mid-training ({what or 'max_restarts 1'})", expected)
        spec = bench.spec(restarts={role: 1 for role in restarts or (task.split(":")[0],)}, ps=ps)
        job = Job(spec)
        bench.wait_epoch(spec)
        os.kill(bench.task_pid(job.app_id(), task), signal.SIGKILL)
        _ended_well(bench, row, spec, job)
        row.orphans = bench.orphans(spec)
        return row

    return run


def kill_side(role: str) -> Callable[[Bench], Row]:
    """A side role (evaluator, tensorboard) killed with no restarts left: training must not notice."""

    def run(bench: Bench) -> Row:
        row = Row(f"kill -9 of the {role} role mid-training (max_restarts 0)",
                  "training succeeds (exit 0); the client names the role that ended")
        spec = bench.spec(side=(role,))
        job = Job(spec)
        bench.wait_epoch(spec)
        os.kill(bench.task_pid(job.app_id(), f"{role}:0"), signal.SIGKILL)
        _ended_well(bench, row, spec, job)
        named = f"task {role}:0 ended" in job.output and "training goes on without it" in job.output
        row.observed += "; the client named it" if named else "; the client did NOT name it"
        row.survived = row.survived and named
        row.orphans = bench.orphans(spec)
        return row

    return run


def kill_am(bench: Bench) -> Row:
    row = Row("kill -9 of the skein ApplicationMaster", "fails within 120 s naming the application's end")
    spec = bench.spec()
    job = Job(spec)
    bench.wait_epoch(spec)
    app_id = job.app_id()
    out = subprocess.run(["pgrep", "-f", "skein.ApplicationMaster"], capture_output=True, text=True).stdout
    ams = [int(p) for p in out.split() if app_id in os.readlink(f"/proc/{p}/cwd")]
    t = time.monotonic()
    for pid in ams:
        os.kill(pid, signal.SIGKILL)
    code = job.wait(180)
    took = time.monotonic() - t
    report = bench.skein.application_report(app_id)
    row.observed = f"{len(ams)} AM killed; exit {code} after {took:.0f}s, {report.state}/{report.final_status}"
    row.survived = bool(ams) and code != 0 and took < 120 and app_id in job.output
    row.orphans = bench.orphans(spec)
    return row


def kill_client_then_reattach(bench: Bench) -> Row:
    row = Row("kill -9 of the submitting client, then the same submit with --reattach",
              "the retry watches the same application to success; one application")
    spec = bench.spec()
    tag = f"run-{uuid.uuid4().hex[:8]}"
    first = Job(spec, "--reattach", tag)
    bench.wait_epoch(spec)
    app_id = first.app_id()
    first.proc.kill()
    retry = Job(spec, "--reattach", tag)
    _ended_well(bench, row, spec, retry)
    apps = bench.apps_named(spec)
    row.observed += f"; retry watched {retry.app_id()} (first {app_id}); {len(apps)} application(s)"
    row.survived = row.survived and retry.app_id() == app_id and len(apps) == 1
    row.orphans = bench.orphans(spec)
    return row


def double_submit(bench: Bench) -> Row:
    row = Row("the same run submitted twice at once (a scheduler retry while the first still starts)",
              "one application; both succeed")
    spec = bench.spec(epochs=EPOCHS, sleep=1.0)
    tag = f"run-{uuid.uuid4().hex[:8]}"
    first = Job(spec, "--reattach", tag)
    time.sleep(1.0)
    second = Job(spec, "--reattach", tag)
    codes = (first.wait(), second.wait())
    apps = bench.apps_named(spec)
    row.lost = bench.epochs_lost(spec)
    row.observed = f"exits {codes}, {len(apps)} application(s)"
    row.survived = codes == (0, 0) and len(apps) == 1
    row.orphans = bench.orphans(spec)
    return row


def restart_namenode(bench: Bench) -> Row:
    row = Row("NameNode kill -9 and restart mid-training (max_restarts 1)",
              "succeeds, or fails naming the NameNode")
    spec = bench.spec(restarts={"chief": 1, "worker": 1})
    job = Job(spec)
    bench.wait_epoch(spec)
    took = restart_daemon("namenode")
    _ended_well(bench, row, spec, job)
    row.observed += f"; NameNode back in {took:.0f}s"
    if not row.survived and "NameNode" in job.output:
        row.survived = True  # failed, naming the cause: as expected
    row.orphans = bench.orphans(spec)
    return row


def restart_yarn_daemon(name: str, label: str) -> Callable[[Bench], Row]:
    """YARN's work-preserving recovery (on in the embedded cluster, as on production ones): the job goes on."""

    def run(bench: Bench) -> Row:
        row = Row(f"{label} kill -9 and restart mid-training (recovery on)",
                  "succeeds: the containers keep running and the restarted daemon takes them back")
        spec = bench.spec()
        job = Job(spec)
        bench.wait_epoch(spec)
        took = restart_daemon(name)
        _ended_well(bench, row, spec, job)
        row.observed += f"; {label} back in {took:.0f}s"
        row.orphans = bench.orphans(spec)
        return row

    return run


def restart_datanode_mid_read(bench: Bench) -> Row:
    """A tf.data read through hdfs_io of 40 MB while the (only) DataNode is killed and restarted."""
    import numpy as np
    import tensorflow as tf

    from hdfs_io.datasets import tfrecord_dataset

    row = Row("DataNode kill -9 and restart during a tf.data read (replication 1)",
              "every record read, or an error naming the file within 120 s")
    data = f"{absolute_uri(bench.base)}/big"
    payload = np.random.default_rng(0).bytes(4096)
    for f in range(4):
        with tf.io.TFRecordWriter(f"{data}/part-{f}.tfrecord") as w:
            for _ in range(2500):
                w.write(payload)
    expected = 4 * 2500
    files = sorted(tf.io.gfile.glob(f"{data}/part-*.tfrecord"))
    seen, error, killed_at = 0, "", []

    def restart() -> None:
        time.sleep(0.5)
        killed_at.append(seen)
        restart_daemon("datanode")

    restarter = threading.Thread(target=restart, daemon=True)
    t = time.monotonic()
    try:
        for i, _ in enumerate(tfrecord_dataset(files).as_numpy_iterator()):
            seen = i + 1
            if i == 1000:
                restarter.start()
            if seen % 500 == 0:
                time.sleep(0.05)  # slow enough that the restart happens mid-read
    except Exception as e:  # noqa: BLE001 - the row reports it
        error = str(e).splitlines()[0][:160]
    took = time.monotonic() - t
    restarter.join(300)
    row.lost = 0 if seen == expected or error else 1
    row.observed = (f"{seen}/{expected} records in {took:.0f}s, the DataNode killed after record "
                    f"{killed_at[0] if killed_at else '?'} (this host reads short-circuit: block files directly)"
                    + (f"; error: {error}" if error else ""))
    row.survived = (seen == expected) or (bool(error) and "part-" in error and took < 120)
    return row


def slow_consumer(args, ctx) -> None:
    """A Spark-mode map_fun that reads its feed for a while (so a node can be killed in the middle)."""
    from tfnode import TFNode

    feed = TFNode.DataFeed(ctx.mgr, train_mode=args["train"])
    while not feed.should_stop():
        batch = feed.next_batch(64)
        if not args["train"] and len(batch):
            feed.batch_results([int(r[0]) for r in batch])
        time.sleep(0.05)


def spark_node_processes(cluster_id: str) -> list[tuple[int, str]]:
    out = subprocess.run(["ps", "-ww", "-eo", "pid,args"], capture_output=True, text=True).stdout
    return [(int(pid), args) for pid, _, args in (line.strip().partition(" ") for line in out.splitlines())
            if f".tfoy/{cluster_id}/" in args and "tfnode.spark.node" in args]


def spark_child(mode: str) -> None:
    """Runs in a process of its own (a SparkContext started from a threaded process can deadlock its fork):
    Spark on the embedded YARN, 2 nodes fed an RDD, one node killed with -9 mid-feed; prints what was seen."""
    from pyspark import SparkConf, SparkContext

    from tfnode import TFCluster

    home = Path(__import__("pyspark").__file__).parent
    os.environ["PYSPARK_PYTHON"] = sys.executable
    os.environ.setdefault("PYSPARK_ARCHIVES_PATH", f"local:{home.parent}")
    conf = (SparkConf().setMaster("yarn").setAppName(f"tfoy-fault-spark-{mode}").set("spark.ui.enabled", "false")
            .set("spark.executor.instances", "2").set("spark.executor.cores", "1")
            .set("spark.executor.memory", "1g").set("spark.executor.memoryOverhead", "384m")
            .set("spark.yarn.am.memory", "512m").set("spark.yarn.jars", f"local:{home}/jars/*")
            .set("spark.dynamicAllocation.enabled", "false").set("spark.executorEnv.PYSPARK_PYTHON", sys.executable)
            .set("spark.executorEnv.HADOOP_CONF_DIR", os.environ.get("HADOOP_CONF_DIR", "")))
    sc = SparkContext(conf=conf)
    sc.setLogLevel("ERROR")
    result: dict = {"app_id": sc.applicationId}
    try:
        cluster = TFCluster.run(sc, slow_consumer, {"train": mode == "train"}, 2, 0,
                                input_mode=TFCluster.InputMode.SPARK, reservation_timeout=120)
        rdd = sc.parallelize([[i] * 16 for i in range(40_000)], 4)
        killed: list[int] = []

        def kill() -> None:
            time.sleep(8)  # the feed is under way
            nodes = spark_node_processes(cluster.cluster_id)
            if nodes:
                os.kill(nodes[0][0], signal.SIGKILL)
                killed.append(nodes[0][0])

        threading.Thread(target=kill, daemon=True).start()
        t = time.monotonic()
        try:
            if mode == "train":
                cluster.train(rdd, feed_timeout=300)
            else:
                result["results"] = cluster.inference(rdd, feed_timeout=300).count()
        except Exception as e:  # noqa: BLE001 - reported: the line that names the cause (py4j errors are long)
            text = str(e)
            result["error"] = next((ln.strip() for ln in text.splitlines()
                                    if re.search(r"TF process|exited without|TF node", ln)), text[:300])
        result.update(took=time.monotonic() - t, killed=killed)
        try:
            cluster.shutdown(timeout=60)
        except Exception as e:  # noqa: BLE001 - reported
            result["shutdown_error"] = str(e)[:300]
        deadline = time.monotonic() + 30
        while spark_node_processes(cluster.cluster_id) and time.monotonic() < deadline:
            time.sleep(0.5)
        result["nodes_left"] = len(spark_node_processes(cluster.cluster_id))
    finally:
        sc.stop()
    print("SPARK-ROW " + json.dumps(result), flush=True)


def kill_spark_node(mode: str) -> Callable[[Bench], Row]:
    def run(bench: Bench) -> Row:
        row = Row(f"kill -9 of a Spark-mode node during cluster.{mode}() (Spark on YARN, 2 nodes)",
                  f"cluster.{mode}() fails within 60 s naming the node's executor; no node or application left")
        proc = subprocess.run([sys.executable, __file__, "--spark-child", mode], capture_output=True, text=True,
                              timeout=600)
        line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("SPARK-ROW ")), None)
        if line is None:
            raise RuntimeError(f"the Spark child printed no result (exit {proc.returncode}):\n{proc.stderr[-1500:]}")
        r = json.loads(line.partition(" ")[2])
        error = r.get("error", "")
        row.observed = (f"node killed: {bool(r['killed'])}; {mode}() "
                        + (f"raised after {r['took']:.0f}s: {error[:200]}" if error else
                           f"returned after {r['took']:.0f}s")
                        + f"; shutdown: {r.get('shutdown_error', 'no error')[:120]}")
        row.survived = bool(r["killed"]) and bool(error) and "executor" in error and r["took"] < 60
        left = [a for a in bench.skein.get_applications(states=["SUBMITTED", "ACCEPTED", "RUNNING"])
                if a.id == r["app_id"]]
        row.orphans = r["nodes_left"] + len(left)
        return row

    return run


ROWS: dict[str, Callable[[Bench], Row]] = {
    "worker": kill_task("worker:1"),
    "chief": kill_task("chief:0"),
    "ps": kill_task("ps:0", restarts=("ps", "chief"), ps=True,
                    what="ParameterServerStrategy; max_restarts 1 on ps and chief",
                    expected="succeeds: the coordinator fails, is restarted and resumes from the last backup"),
    "evaluator": kill_side("evaluator"),
    "tensorboard": kill_side("tensorboard"),
    "am": kill_am,
    "client": kill_client_then_reattach,
    "double": double_submit,
    "namenode": restart_namenode,
    "datanode": restart_datanode_mid_read,
    "spark-train": kill_spark_node("train"),
    "spark-inference": kill_spark_node("inference"),
    "nodemanager": restart_yarn_daemon("nodemanager", "NodeManager"),
    "resourcemanager": restart_yarn_daemon("resourcemanager", "ResourceManager"),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", default=",".join(ROWS), help=f"comma-separated, of {', '.join(ROWS)}")
    parser.add_argument("--spark-child", choices=["train", "inference"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.spark_child:
        return spark_child(args.spark_child)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    bench = Bench()
    rows: list[Row] = []
    try:
        for key in args.rows.split(","):
            t = time.monotonic()
            try:
                row = ROWS[key](bench)
            except Exception as e:  # noqa: BLE001 - a row that breaks is a row not survived
                row = Row(key, "(row did not complete)", observed=f"{type(e).__name__}: {e}"[:300])
            rows.append(row)
            log.info("%s: %s (%.0fs)", row.fault, "survived" if row.survived else "NOT survived",
                     time.monotonic() - t)
    finally:
        fs.delete(absolute_uri(bench.base), recursive=True)
        bench.skein.close()
    print("\n| fault | expected | observed | survived | epochs lost | orphans |\n|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r.fault} | {r.expected} | {r.observed} | {'yes' if r.survived else 'NO'} | {r.lost} | {r.orphans} |")
    ok = sum(r.survived and r.lost == 0 and r.orphans == 0 for r in rows)
    print(f"RESULT faults_survived={ok} faults_total={len(rows)} lost={sum(max(r.lost, 0) for r in rows)} "
          f"orphans={sum(r.orphans for r in rows)}")


if __name__ == "__main__":
    main()
