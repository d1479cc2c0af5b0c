"""tfnode.contract: what the client (yarn_app) writes, the containers (tfnode.yarn.bootstrap) read, and back.

Each test runs the real code of both sides: the client's skein spec and watch snapshot, the supervisor's reports.
"""

from __future__ import annotations

import importlib.util
import json
import re
import time

import pytest

from tfnode import contract, progress
from tfnode.yarn import barrier, bootstrap
from yarn_app import cluster_checks, job_view
from yarn_app.application import Shipping, build_application_spec, job_runtime
from yarn_app.spec import JobSpec, SpecError

SPEC = {"entry_point": "toy_train:main", "log_dir": "logs", "model_dir": "/models/m",
        "roles": {"chief": {}, "worker": {"instances": 2, "gpus": 1, "max_restarts": 2}, "evaluator": {},
                  "tensorboard": {}}}


def test_job_runtime_round_trips_through_the_environment_the_client_sets(monkeypatch):
    spec = JobSpec.from_dict(SPEC)
    app = build_application_spec(spec, Shipping(code_zip="/tmp/code.zip", python="/usr/bin/python3"))
    assert set(app.services) == set(spec.roles)
    for role, service in app.services.items():
        encoded = service.env[contract.JOB_ENV]
        assert re.fullmatch(r"[A-Za-z0-9+/=]+", encoded)  # nothing YARN's launch script could mangle
        for key, value in service.env.items():
            monkeypatch.setenv(key, value)
        assert contract.JobRuntime.from_env() == job_runtime(spec)  # what the container decodes is what was sent
        assert service.env[contract.ROLE_ENV] == role
        assert service.script.endswith(f" -m {contract.CONTAINER_MODULE}")
    assert importlib.util.find_spec(contract.CONTAINER_MODULE) is not None
    runtime = contract.JobRuntime.from_env()
    assert runtime.roles == {"chief": 1, "worker": 2, "evaluator": 1}  # tensorboard is no TensorFlow task
    assert runtime.gpus == {"worker": 1} and runtime.restartable and runtime.model_dir.endswith("/models/m")


def test_role_names_fit_together():
    tf = set(contract.TF_ROLES)
    assert set(contract.ROLE_NAMES) - tf == {"tensorboard"}
    assert set(contract.SIDE_ROLES) <= set(contract.ROLE_NAMES)
    for roles in (contract.CHIEF_ROLES, contract.TRAINING_ROLES, contract.SERVER_ROLES_PS, contract.FEEDLESS_ROLES):
        assert set(roles) <= tf, roles
    assert set(JobSpec.from_dict(SPEC).tf_roles) <= tf
    with pytest.raises(SpecError, match=r"roles\.master: unknown key \(allowed: chief, evaluator, ps, tensorboard"):
        JobSpec.from_dict({**SPEC, "roles": {"master": {}, "worker": {}}})


@pytest.mark.parametrize("name", [contract.JOB_ENV, contract.ROLE_ENV, bootstrap.CTX_ENV, bootstrap.RESULT_ENV,
                                  bootstrap.STACKS_ENV, bootstrap.SUPERVISOR_ENV, progress.PROGRESS_ENV])
def test_every_tfoy_variable_of_a_container_is_refused_in_a_job_spec(name):
    assert name.startswith(contract.ENV_PREFIX) and name not in contract.USER_ENV
    with pytest.raises(SpecError, match=rf"env\.{name}: tfoy's own"):
        JobSpec.from_dict({**SPEC, "env": {name: "x"}})


def test_keys_are_laid_out_as_documented():
    documented = contract.__doc__.partition("Keys (all under `tfoy/`):")[2]
    values = {"<role>": "worker", "<i>": "1", "<gen>": "3"}
    rows = [line.split()[0] for line in documented.splitlines() if line.strip() and line[2] != " "]
    assert len(rows) == 9
    for pattern in rows:
        kind = pattern.split("/")[0]
        key = contract.KV_PREFIX + re.sub(r"<\w+>", lambda m: values[m.group()], pattern)
        made = getattr(contract, f"{kind}_key", None)
        if made is None:
            assert getattr(contract, f"{kind.upper()}_KEY") == key
        elif kind == "addr":
            assert made(3, "worker", 1) == key and key.startswith(contract.addr_prefix(3))
        else:
            assert made("worker", 1) == key and key.startswith(getattr(contract, f"{kind.upper()}_PREFIX"))


def test_task_names_and_keys_parse_back():
    assert contract.parse_task_name(contract.task_name("evaluator", 0)) == ("evaluator", 0)
    keys = {contract.state_key("worker", 1): b"s", contract.outcome_key("worker", 1): b"o",
            contract.addr_key(0, "chief", 0): b"a", contract.GEN_KEY: b"0", f"{contract.STATE_PREFIX}x/y": b"?"}
    assert contract.parse_task_keys(keys, contract.STATE_PREFIX) == {("worker", 1): b"s"}
    assert contract.parse_task_keys(keys, contract.addr_prefix(0)) == {("chief", 0): b"a"}
    assert contract.outcome_text(True) == contract.OUTCOME_OK
    assert contract.failure_detail(contract.outcome_text(False, "Traceback:\n  boom")) == "Traceback:\n  boom"


class KV(dict):
    """The part of skein's KeyValueStore that the supervisor's reports and the client's snapshot use."""

    def put(self, key, value, owner=None):
        self[key] = value

    def get_prefix(self, prefix):
        return {k: v for k, v in self.items() if k.startswith(prefix)}


class _Report:
    state, final_status, diagnostics = "RUNNING", "UNDEFINED", ""


class _Yarn:
    def __init__(self, kv):
        self.kv = kv

    def application_report(self, app_id):
        return _Report()

    def get_containers(self, states=None):
        return []


def test_what_the_supervisors_write_is_what_the_client_shows(monkeypatch, tmp_path):
    monkeypatch.setattr(cluster_checks, "tracking_url", lambda app_id: "")
    job = job_runtime(JobSpec.from_dict(SPEC))
    kv = KV()
    chief = bootstrap.Supervisor(kv, job, "chief", "container_1", "h1")
    worker = bootstrap.Supervisor(kv, job, "worker", "container_2", "h2")
    chief.index, worker.index = 0, 1
    worker.put_state("running", generation=0)
    snap = tmp_path / "progress.json"
    progress.FileSink(snap)({"phase": "training", "epoch": 2, "seq": 1})
    assert not bootstrap.ProgressWatch(kv, contract.progress_key("worker", 1), snap, None).poll()
    kv[contract.CLIENT_KEY] = b"watching"
    kv[contract.ack_key(*contract.parse_task_name("chief:0"))] = b"1"  # as the watching client acknowledges
    started = time.monotonic()
    assert chief.report(False, "Traceback: boom") == 1
    assert time.monotonic() - started < bootstrap.ACK_WAIT_S  # the acknowledgement was the one it waits for
    assert barrier.chief_has_ended(kv, job.chief_task, restartable=False)

    prog = job_view.snapshot(_Yarn(kv), "application_1_0001", _Yarn(kv),
                             job_view.expected_task_names(JobSpec.from_dict(SPEC)))
    tasks = prog.tasks
    assert set(tasks) == {"chief:0", "worker:0", "worker:1", "evaluator:0", "tensorboard:0"}
    assert tasks["chief:0"].state == "failed" and tasks["chief:0"].container == "container_1"
    assert contract.failure_detail(tasks["chief:0"].outcome) == "Traceback: boom"
    assert tasks["worker:1"].state == "running" and tasks["worker:1"].progress["epoch"] == 2
    assert tasks["worker:0"].state == "-" and tasks["worker:0"].outcome is None
    assert json.loads(kv[contract.state_key("worker", 1)])["host"] == "h2"
