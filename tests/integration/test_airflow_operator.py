"""The Airflow operator against the real YARN: success, failure, and a retry that re-attaches instead of
submitting a second copy. Airflow lives in its own environment (TFOY_AIRFLOW_PYTHON, made by build.sh setup)."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
import uuid

import pytest

from tests.conftest import ROOT

pytestmark = pytest.mark.integration

RUNNER = """
import json, sys
from types import SimpleNamespace
from airflow.exceptions import AirflowException
from yarn_app.airflow_operator import TfoySubmitOperator

spec, run_id, mode = sys.argv[1:4]
op = TfoySubmitOperator(task_id="train", spec=spec, overrides={"args": f"[{mode}]"})
ctx = {"ti": SimpleNamespace(dag_id="tfoy_test", task_id="train", run_id=run_id)}
try:
    print("RESULT " + json.dumps({"ok": True, "app": op.execute(ctx)}), flush=True)
except AirflowException as exc:
    print("RESULT " + json.dumps({"ok": False, "app": op.app_id, "error": str(exc)}), flush=True)
"""

JOB = """
import sys, time

def main(args, ctx):
    mode = args[0]
    if mode == "fail":
        raise RuntimeError("airflow-test job fails on purpose")
    if mode.startswith("sleep"):
        time.sleep(int(mode[5:]))
    print("airflow-test job done", flush=True)
"""


@pytest.fixture(scope="module")
def airflow_python() -> str:
    python = os.environ.get("TFOY_AIRFLOW_PYTHON")
    if not python or not os.path.exists(python):
        pytest.fail(f"TFOY_AIRFLOW_PYTHON={python!r} is not an Airflow environment: run ./build.sh setup")
    return python


@pytest.fixture
def job_spec(tmp_path):
    (tmp_path / "airflow_job.py").write_text(textwrap.dedent(JOB))
    spec = tmp_path / "job.yaml"
    spec.write_text(textwrap.dedent(f"""
        name: tfoy-airflow-test-{uuid.uuid4().hex[:6]}
        entry_point: airflow_job:main
        files: {{airflow_job.py: airflow_job.py}}
        roles: {{worker: {{instances: 1, memory: 512}}}}
        python_env: {{python: {sys.executable}}}   # the operator runs in Airflow's venv, the job in tfoy's
        timeouts: {{allocation: 240, barrier: 120, job: 600}}
    """))
    return str(spec)


def run_operator(python: str, spec: str, run_id: str, mode: str, tmp_path) -> dict:
    env = dict(os.environ, AIRFLOW_HOME=str(tmp_path / "airflow-home"), PYTHONPATH=str(ROOT))
    proc = subprocess.run([python, "-c", RUNNER, spec, run_id, mode], capture_output=True, text=True, env=env,
                          timeout=900, cwd=ROOT)
    results = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    assert results, f"operator printed no result (exit {proc.returncode})\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return json.loads(results[-1][len("RESULT "):]) | {"log": proc.stdout + proc.stderr}


def test_success_and_failure(airflow_python, job_spec, skein_client, tmp_path):
    ok = run_operator(airflow_python, job_spec, "run-ok", "quick", tmp_path)
    assert ok["ok"], ok["log"][-3000:]
    assert str(skein_client.application_report(ok["app"]).final_status) == "SUCCEEDED"

    failed = run_operator(airflow_python, job_spec, "run-fail", "fail", tmp_path)
    assert not failed["ok"]
    assert "failed with exit 1" in failed["error"]
    assert "airflow-test job fails on purpose" in failed["log"]  # the task's traceback reaches the Airflow log
    assert str(skein_client.application_report(failed["app"]).final_status) == "FAILED"


def test_retry_reattaches_to_the_running_application(airflow_python, job_spec, skein_client, tmp_path):
    env = dict(os.environ, AIRFLOW_HOME=str(tmp_path / "airflow-home"), PYTHONPATH=str(ROOT))
    # try 1: the Airflow worker dies (kill -9) while its job runs on
    first = subprocess.Popen([airflow_python, "-c", RUNNER, job_spec, "run-retry", "sleep45"], env=env, cwd=ROOT,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    app_id = None
    deadline = time.monotonic() + 300
    for line in first.stdout:
        found = re.search(r"application id: (application_\d+_\d+)", line)
        if found:
            app_id = found.group(1)
            break
        assert time.monotonic() < deadline, "try 1 printed no application id"
    assert app_id
    os.killpg(first.pid, signal.SIGKILL)
    first.wait()
    assert str(skein_client.application_report(app_id).state) in ("ACCEPTED", "RUNNING")

    # try 2 of the same task in the same run: re-attaches and succeeds with the same application
    second = run_operator(airflow_python, job_spec, "run-retry", "sleep45", tmp_path)
    assert second["ok"], second["log"][-3000:]
    assert second["app"] == app_id
    assert f"re-attaching to {app_id}" in second["log"]
    name = skein_client.application_report(app_id).name
    same = skein_client.get_applications(states=["SUBMITTED", "ACCEPTED", "RUNNING", "FINISHED", "FAILED",
                                                 "KILLED"], name=name)
    assert [r.id for r in same] == [app_id]  # one application for both tries
