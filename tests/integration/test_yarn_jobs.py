"""`tfoy` against the real YARN and HDFS: training jobs, failures, restarts, bad input, Ctrl-C, status/kill."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import yaml

from tests.conftest import run_cli
from yarn_app import cluster_checks

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
TOY = ROOT / "examples" / "toy_train.py"
TFOY = str(Path(sys.executable).parent / "tfoy")
JOB_TIMEOUT = 420
FINAL = ("FINISHED", "FAILED", "KILLED")


@pytest.fixture(scope="module")
def toy_data(hdfs):
    """4 TFRecord files of 100 tf.Examples (x: 8 floats, y = x·w) on HDFS, shared by the module's jobs."""
    import hdfs_io  # noqa: F401 - TF's hdfs:// (toy_train writes with TF's own API)
    from hdfs_io.paths import absolute_uri

    sys.path.insert(0, str(TOY.parent))
    from toy_train import write_toy_data

    base = f"/tmp/tfoy-test/yarn-{uuid.uuid4().hex[:10]}"
    write_toy_data(f"{absolute_uri(base)}/data")
    yield base
    hdfs.delete(base, recursive=True)


@pytest.fixture(scope="module")
def ended():
    """Application ids of this module's finished jobs by outcome, for the history page test at its end."""
    return {}


def history_of(app_id: str) -> dict:
    """The job's history record, as `tfoy status` reads it once YARN has finished it."""
    status = run_cli(TFOY, "status", app_id, "--json", timeout=120)
    record = json.loads(status.stdout)
    assert record.get("format") == 1, f"not from the job history: {status.stdout[:1000]}"
    return record


def make_spec(tmp_path: Path, base: str, archive: bool = False, shared: bool = False, **changes) -> Path:
    """archive: ship the packed venv (`archive: auto`, private unless shared) instead of this interpreter."""
    name = f"tfoy-it-{uuid.uuid4().hex[:8]}"
    python_env = {"archive": "auto", "shared": True} if shared else {"archive": "auto"}
    spec = {
        "name": name,
        "entry_point": "toy_train:main",
        "args": ["--data", f"{base}/data", "--epochs", "2", "--steps", "3"],
        "files": {"toy_train.py": str(TOY)},
        "roles": {"chief": {"memory": 1024}, "worker": {"instances": 2, "memory": 1024}},
        "python_env": python_env if archive else {"python": sys.executable},
        "timeouts": {"allocation": 240, "barrier": 240, "job": JOB_TIMEOUT},
        "model_dir": f"{base}/{name}/model",
        "export_dir": f"{base}/{name}/export",
        "inputs": [f"{base}/data"],
    }
    spec.update(changes)
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def app_id_of(output: str) -> str:
    m = re.search(r"application id: (application_\d+_\d+)", output)
    assert m, output[-3000:]
    return m.group(1)


def submit(spec: Path, *extra: str, timeout: float = JOB_TIMEOUT + 60) -> subprocess.CompletedProcess:
    return run_cli(TFOY, "submit", str(spec), *extra, timeout=timeout, check=False)


def assert_not_running(skein_client, app_id: str) -> None:
    state = str(skein_client.application_report(app_id).state)
    if state not in FINAL:
        skein_client.kill_application(app_id)
    assert state in FINAL, f"{app_id} left {state}"


def no_app_named(skein_client, name: str) -> bool:
    states = ["NEW", "NEW_SAVING", "SUBMITTED", "ACCEPTED", "RUNNING", "FINISHED", "FAILED", "KILLED"]
    return not [a for a in skein_client.get_applications(states=states) if a.name == name]


def env_localized_path(app_id: str) -> str:
    """Where the NodeManager linked tfoy_env from (directory.info in the aggregated logs)."""
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        out = run_cli("yarn", "logs", "-applicationId", app_id, check=False).stdout
        m = re.search(r"tfoy_env -> (\S+)", out)
        if m:
            return m.group(1)
        time.sleep(3)
    raise AssertionError(f"no tfoy_env link in the logs of {app_id}")


# ---- training --------------------------------------------------------------------------------------------------
def test_mwms_job_with_shipped_env_trains_and_exports(tmp_path, toy_data, hdfs, skein_client, ended):
    spec = make_spec(tmp_path, toy_data, archive=True, shared=True)  # the PUBLIC cache is what this test checks
    proc = submit(spec)
    app_id = app_id_of(proc.stdout)
    assert_not_running(skein_client, app_id)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "tracking URL: http://" in proc.stdout
    assert re.search(r"chief:0=succeeded worker:0=succeeded worker:1=succeeded", proc.stdout), proc.stdout
    # progress while it ran (piped: plain lines), then the record of its end
    assert re.search(r"chief:0 +\w+ +epoch 2/2 step \d+ loss [0-9.]+", proc.stdout), proc.stdout[-3000:]
    record = history_of(app_id)
    assert record["final_status"] == "SUCCEEDED" and record["exit_code"] == 0
    assert {n: t["outcome"] for n, t in record["tasks"].items()} == {
        "chief:0": "succeeded", "worker:0": "succeeded", "worker:1": "succeeded"}
    assert [e["epoch"] for e in record["tasks"]["chief:0"]["epochs"]] == [1, 2]
    ended["succeeded"] = app_id
    name = yaml.safe_load(spec.read_text())["name"]
    export = f"{toy_data}/{name}/export"
    versions = [os.path.basename(s.path) for s in hdfs.list_status(export)]
    assert versions == ["1"]
    files = {os.path.basename(s.path) for s in hdfs.list_status(f"{export}/1", recursive=True)}
    assert {"saved_model.pb", "variables.index"} <= files
    state = json.loads(hdfs.read(f"{toy_data}/{name}/model/state.json").read())
    assert state["epoch"] == 1

    # A second job reuses the shared env archive from the NodeManager's public cache: same localized path.
    first = env_localized_path(app_id)
    assert "/filecache/" in first and "/usercache/" not in first, first
    proc2 = submit(make_spec(tmp_path, toy_data, archive=True, shared=True,
                             roles={"chief": {"memory": 1024}, "worker": {"instances": 1, "memory": 1024}}))
    assert proc2.returncode == 0, proc2.stdout[-3000:]
    assert env_localized_path(app_id_of(proc2.stdout)) == first


def test_parameter_server_job_trains(tmp_path, toy_data, hdfs, skein_client):
    spec = make_spec(tmp_path, toy_data, strategy="parameter_server", keras=2,
                     roles={"chief": {"memory": 1024}, "ps": {"memory": 768},
                            "worker": {"instances": 2, "memory": 768}, "evaluator": {"memory": 768}})
    proc = submit(spec)
    app_id = app_id_of(proc.stdout)
    assert_not_running(skein_client, app_id)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    for task in ("chief:0", "ps:0", "worker:0", "worker:1", "evaluator:0"):
        assert f"{task}=succeeded" in proc.stdout, proc.stdout
    name = yaml.safe_load(spec.read_text())["name"]
    result = json.loads(hdfs.read(f"{toy_data}/{name}/model/ps_result.json").read())
    assert result["steps"] > 0 and result["final_loss"] == result["final_loss"]  # trained, not NaN


# ---- failures ---------------------------------------------------------------------------------------------------
def test_failing_task_fails_the_job_with_its_traceback(tmp_path, toy_data, skein_client, ended):
    spec = make_spec(tmp_path, toy_data, args=["--data", f"{toy_data}/data", "--fail", "worker:1"])
    proc = submit(spec)
    app_id = app_id_of(proc.stdout)
    assert_not_running(skein_client, app_id)
    assert proc.returncode == 1, proc.stdout[-3000:]
    assert "task worker:1 FAILED" in proc.stdout
    assert "RuntimeError: toy_train: worker:1 fails on purpose" in proc.stdout
    assert "Traceback (most recent call last)" in proc.stdout
    assert str(skein_client.application_report(app_id).final_status) == "FAILED"
    record = history_of(app_id)
    assert record["final_status"] == "FAILED" and record["exit_code"] == 1
    assert record["tasks"]["worker:1"]["outcome"] == "failed"
    assert "worker:1 fails on purpose" in record["traceback"]
    text = run_cli(TFOY, "status", app_id, timeout=120).stdout
    assert "from the job history" in text and "worker:1 fails on purpose" in text, text
    ended["failed"] = app_id


def test_the_stall_watchdog_fails_a_task_that_stops_reporting_naming_it(tmp_path, toy_data, skein_client):
    spec = make_spec(tmp_path, toy_data, args=["--data", f"{toy_data}/data", "--hang", "worker:1"],
                     timeouts={"allocation": 240, "barrier": 240, "job": JOB_TIMEOUT, "progress": 20})
    proc = submit(spec)
    app_id = app_id_of(proc.stdout)
    assert_not_running(skein_client, app_id)
    assert proc.returncode == 1, proc.stdout[-3000:]
    assert "task worker:1 stalled: no progress report for 20s (timeouts.progress" in proc.stdout, proc.stdout[-3000:]
    assert re.search(r'File ".*toy_train.py", line \d+ in main', proc.stdout), proc.stdout[-3000:]  # its stack


def test_a_task_that_fails_once_and_succeeds_on_restart_is_a_success(tmp_path, toy_data, skein_client):
    """Before, `tfoy submit` exited 1 for an application YARN called SUCCEEDED (a scheduler then ran it again)."""
    spec = make_spec(tmp_path, toy_data, args=["--data", f"{toy_data}/data", "--fail-once", "worker:1"],
                     roles={"chief": {"memory": 1024}, "worker": {"instances": 2, "memory": 1024, "max_restarts": 1}})
    proc = submit(spec)
    app_id = app_id_of(proc.stdout)
    assert_not_running(skein_client, app_id)
    assert "task worker:1 FAILED" in proc.stdout and "fails once on purpose" in proc.stdout, proc.stdout[-3000:]
    assert "task worker:1 succeeded after a restart" in proc.stdout, proc.stdout[-3000:]
    assert str(skein_client.application_report(app_id).final_status) == "SUCCEEDED"
    assert proc.returncode == 0, proc.stdout[-3000:]


def test_a_detached_job_is_held_to_its_job_timeout_by_the_resourcemanager(tmp_path, toy_data, skein_client):
    """Before, only a watching client enforced timeouts.job: a `--detach`ed job could run for ever."""
    spec = make_spec(tmp_path, toy_data, args=["--data", f"{toy_data}/data", "--epochs", "50", "--epoch-sleep", "5"],
                     timeouts={"allocation": 120, "barrier": 120, "job": 25})
    proc = submit(spec, "--detach", timeout=120)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    app_id = app_id_of(proc.stdout)
    started = time.monotonic()
    while time.monotonic() - started < 120:
        report = skein_client.application_report(app_id)
        if str(report.state) in FINAL:
            break
        time.sleep(2)
    else:
        skein_client.kill_application(app_id)
        raise AssertionError(f"{app_id} still {report.state} 120 s after a detached submit with timeouts.job: 25")
    assert str(report.state) == "KILLED" and "lifetime" in report.diagnostics.lower(), report.diagnostics


def test_barrier_timeout_names_the_missing_tasks(tmp_path, toy_data, skein_client):
    # 3 × 6 GiB on a 14 GiB NodeManager (plus the AM): one task is never allocated.
    spec = make_spec(tmp_path, toy_data, roles={"chief": {"memory": "6 GiB"},
                                                 "worker": {"instances": 2, "memory": "6 GiB"}},
                     timeouts={"allocation": 200, "barrier": 25, "job": 300})
    proc = submit(spec)
    app_id = app_id_of(proc.stdout)
    assert_not_running(skein_client, app_id)
    assert proc.returncode == 1, proc.stdout[-3000:]
    assert re.search(r"start-up barrier timed out after 25s: task\(s\) never arrived: (chief|worker):\d", proc.stdout)


def test_kill_9_restarts_the_task_and_training_resumes(tmp_path, toy_data, hdfs, skein_client):
    spec = make_spec(tmp_path, toy_data, args=["--data", f"{toy_data}/data", "--epochs", "6", "--steps", "3",
                                               "--epoch-sleep", "3"],
                     roles={"chief": {"memory": 1024}, "worker": {"instances": 2, "memory": 1024, "max_restarts": 1}})
    name = yaml.safe_load(spec.read_text())["name"]
    proc = subprocess.Popen([TFOY, "submit", str(spec)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: list[str] = []
    try:
        app_id = None
        while app_id is None:
            line = proc.stdout.readline()
            assert line, "".join(lines)
            lines.append(line)
            if m := re.search(r"application id: (\S+)", line):
                app_id = m.group(1)
        app = skein_client.connect(app_id)
        deadline = time.monotonic() + 300
        state_file = f"{toy_data}/{name}/model/state.json"
        while time.monotonic() < deadline:  # wait for the first checkpoint on HDFS
            try:
                hdfs.get_file_info(state_file)
                break
            except FileNotFoundError:
                time.sleep(0.5)
        else:
            raise AssertionError("no checkpoint written")
        state = json.loads(app.kv["tfoy/state/worker/1"])
        assert state["state"] == "running" and state["host"] in ("localhost", os.uname().nodename)
        os.kill(state["pid"], signal.SIGKILL)  # the container's main process (the bootstrap supervisor)
        out, _ = proc.communicate(timeout=JOB_TIMEOUT)
        lines.append(out)
    finally:
        if proc.poll() is None:
            proc.kill()
    output = "".join(lines)
    assert_not_running(skein_client, app_id)
    assert proc.returncode == 0, output[-4000:]
    logs = run_cli(TFOY, "logs", app_id, "--task", "worker:1", timeout=180).stdout
    assert logs.count("tfoy task worker:1 ") == 2, logs[-3000:]  # the killed container and its replacement
    chief_logs = run_cli(TFOY, "logs", app_id, "--task", "chief:0", timeout=180).stdout
    assert re.search(r"chief:0 resuming at epoch [1-5] from", chief_logs), chief_logs[-3000:]
    assert json.loads(hdfs.read(state_file).read())["epoch"] == 5
    assert [os.path.basename(s.path) for s in hdfs.list_status(f"{toy_data}/{name}/export")] == ["1"]


def test_secret_env_reaches_the_task_but_never_the_logs_or_launch_scripts(tmp_path, toy_data):
    secret = f"s3cr3t-{uuid.uuid4().hex}"
    spec = make_spec(tmp_path, toy_data, env={"PLAIN_SETTING": "visible", "API_TOKEN": secret},
                     security={"secret_env": ["API_TOKEN"]},
                     args=["--data", f"{toy_data}/data", "--epochs", "1", "--steps", "2", "--digest-env", "API_TOKEN"])
    proc = submit(spec)
    assert proc.returncode == 0, proc.stdout[-4000:]
    app_id = app_id_of(proc.stdout)
    import hashlib

    digest = hashlib.sha256(secret.encode()).hexdigest()
    deadline = time.monotonic() + 120
    while True:  # aggregation finishes a little after the application
        logs = run_cli("yarn", "logs", "-applicationId", app_id, check=False).stdout
        if logs.count(f"env API_TOKEN sha256={digest}") == 3 or time.monotonic() > deadline:
            break
        time.sleep(3)
    assert logs.count(f"env API_TOKEN sha256={digest}") == 3, logs[-3000:]  # chief and both workers had it
    assert "launch_container.sh" in logs and "PLAIN_SETTING" in logs  # the launch scripts are in there
    assert secret not in logs and secret not in proc.stdout + proc.stderr
    assert secret not in run_cli(TFOY, "logs", app_id, timeout=180).stdout


# ---- CLI: bad input, Ctrl-C, status / kill ----------------------------------------------------------------------
BAD_INPUTS = [
    ({"epochz": 3}, "epochz: unknown key"),
    ({"roles": {"worker": {"instances": "2"}}}, "roles.worker.instances: expected int"),
    ({"roles": {"worker": {"instances": 1, "memory": "64 GiB"}}}, "roles.worker.memory: 65536 MiB is above"),
    ({"queue": "no_such_queue"}, "queue: 'no_such_queue' does not exist"),
    ({"entry_point": "toy_train:no_such_function"}, "defines no function 'no_such_function'"),
    ({"entry_point": "no_such_module:main"}, "module 'no_such_module' does not import"),
    ({"python_env": {"archive": "/tmp/tfoy-test/no-such-env.tar.gz"}}, "python_env.archive: hdfs://"),
    ({"inputs": ["/tmp/tfoy-test/no-such-input"]}, "inputs[0]: hdfs://"),
    ({"roles": {"chief": {}, "worker": {"instances": 0}}}, "roles.worker.instances: a job needs at least 1 worker"),
]


@pytest.mark.parametrize("changes, message", BAD_INPUTS, ids=[m.split(":")[0] for _, m in BAD_INPUTS])
def test_bad_input_is_rejected_before_submission(tmp_path, toy_data, skein_client, changes, message):
    spec = make_spec(tmp_path, toy_data, **changes)
    proc = run_cli(TFOY, "submit", str(spec), timeout=120, check=False)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert message in proc.stderr, proc.stderr
    assert "application id" not in proc.stdout
    assert no_app_named(skein_client, yaml.safe_load(spec.read_text())["name"])


def test_detach_status_json_and_kill(tmp_path, toy_data, skein_client):
    spec = make_spec(tmp_path, toy_data, args=["--data", f"{toy_data}/data", "--epochs", "50", "--epoch-sleep", "5"])
    proc = run_cli(TFOY, "submit", str(spec), "--detach", timeout=120)
    app_id = app_id_of(proc.stdout)
    try:
        deadline = time.monotonic() + 180
        status = {}
        while time.monotonic() < deadline:
            status = json.loads(run_cli(TFOY, "status", app_id, "--json", timeout=120).stdout)
            if status["tasks"] and all(t["state"] == "running" for t in status["tasks"].values()):
                break
            time.sleep(2)
        assert status["state"] == "RUNNING" and set(status["tasks"]) == {"chief:0", "worker:0", "worker:1"}, status
        assert status["tracking_url"].endswith(f"/proxy/{app_id}/")
        text = run_cli(TFOY, "status", app_id, timeout=120).stdout
        assert "worker:1" in text and "RUNNING" in text
        assert run_cli(TFOY, "kill", app_id, timeout=120).stdout.strip() == f"killed {app_id}"
        assert str(skein_client.application_report(app_id).state) == "KILLED"
        again = run_cli(TFOY, "kill", app_id, timeout=120)  # said "killed" again, of an ended application
        assert again.stdout.strip() == f"{app_id} had already ended (KILLED/KILLED): nothing to kill", again
    finally:
        assert_not_running(skein_client, app_id)


def test_tensorboard_role_serves_log_dir_on_the_tracking_page(tmp_path, toy_data, hdfs, skein_client):
    import urllib.request

    import tensorflow as tf

    log_dir = f"{toy_data}/tb-{uuid.uuid4().hex[:6]}"
    with tf.summary.create_file_writer(str(tmp_path / "tb" / "train")).as_default():
        tf.summary.scalar("tfoy_marker", 1.0, step=0)
    (event_file,) = (tmp_path / "tb" / "train").iterdir()
    with hdfs.create(f"{log_dir}/train/{event_file.name}") as f:
        f.write(event_file.read_bytes())
    spec = make_spec(tmp_path, toy_data, args=["--data", f"{toy_data}/data", "--epochs", "50", "--epoch-sleep", "5"],
                     roles={"chief": {"memory": 1024}, "worker": {"instances": 1, "memory": 1024},
                            "tensorboard": {"memory": 512}},
                     log_dir=log_dir)
    app_id = app_id_of(run_cli(TFOY, "submit", str(spec), "--detach", timeout=120).stdout)
    try:
        app = skein_client.connect(app_id)
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            raw = app.kv.get("tfoy/state/tensorboard/0")
            if raw and json.loads(raw)["state"] == "serving":
                break
            time.sleep(1)
        else:
            raise AssertionError("the tensorboard role never served")
        pages = app.ui.get_pages()
        assert pages["tensorboard"].link_name == "TensorBoard"
        body = ""
        while time.monotonic() < deadline:  # TensorBoard binds, then finds the run mirrored from HDFS
            try:
                with urllib.request.urlopen(pages["tensorboard"].address + "data/runs", timeout=10) as r:
                    body = r.read().decode(errors="replace")
                if "train" in json.loads(body):
                    break
            except (OSError, ValueError):
                pass
            time.sleep(2)
        assert "train" in json.loads(body), body[:2000]  # TensorBoard's run list, through YARN's web proxy
        # reached through YARN's tracking URL (the RM web proxy), where users click from the RM UI
        assert pages["tensorboard"].address == f"http://{cluster_checks.rm_webapp()}/proxy/{app_id}/pages/tensorboard/"
    finally:
        run_cli(TFOY, "kill", app_id, timeout=120, check=False)
        assert_not_running(skein_client, app_id)


def test_history_page_lists_jobs_and_shows_a_failed_tasks_traceback_in_a_browser(ended):
    """`tfoy history --serve`, read by a real headless browser (Chromium), over this module's job records."""
    import shutil

    assert {"succeeded", "failed"} <= set(ended), f"needs this module's succeeded and failed jobs first: {ended}"
    empty = run_cli(TFOY, "history", "--history-dir", f"/tmp/tfoy-test/no-history-{uuid.uuid4().hex[:6]}")
    assert empty.returncode == 0 and "no job history in hdfs://" in empty.stdout, empty.stdout + empty.stderr
    listed = run_cli(TFOY, "history", "--since", "1d").stdout
    assert ended["succeeded"] in listed and ended["failed"] in listed, listed[-2000:]
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    assert browser, "Chromium not found: ./build.sh test installs Debian's chromium"
    server = subprocess.Popen([TFOY, "history", "--serve", "--port", "0"], stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True)
    try:
        line = server.stdout.readline()
        m = re.search(r"at (http://\S+/)", line)
        assert m, line

        def dom(url: str) -> str:
            out = subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--dump-dom", url],
                                 capture_output=True, text=True, timeout=120)
            assert out.returncode == 0, out.stderr[-2000:]
            return out.stdout

        index = dom(m.group(1))
        assert ended["succeeded"] in index and ended["failed"] in index, index[:3000]
        assert "SUCCEEDED" in index and "FAILED" in index
        page = dom(f"{m.group(1)}job/{ended['failed']}")
        assert "worker:1 fails on purpose" in page and "class=\"traceback\"" in page, page[:3000]
        assert f"tfoy logs {ended['failed']}" in page
        good = dom(f"{m.group(1)}job/{ended['succeeded']}")
        assert "<svg" in good and "loss by epoch" in good, good[:3000]  # the metrics plot
    finally:
        server.terminate()
        server.wait(30)
