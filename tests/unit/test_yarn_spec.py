"""Job spec parsing, validation messages, CLI overrides, and the JobSpec → skein translation (no cluster)."""

from __future__ import annotations

import base64
import json
import re
import zipfile
from pathlib import Path

import pytest
import yaml

from hdfs_io import native_build
from tfnode import contract
from tfnode.contract import JobRuntime
from tfnode.yarn import barrier as kvb
from tfnode.yarn.bootstrap import cuda_visible_devices
from yarn_app import cluster_checks
from yarn_app.application import Shipping, build_application_spec, job_runtime
from yarn_app.code_zip import build_code_zip
from yarn_app.spec import JobSpec, SpecError, apply_overrides, load_spec, parse_memory

ROOT = Path(__file__).resolve().parents[2]
BASE = {"entry_point": "toy_train:main", "roles": {"chief": {}, "worker": {"instances": 2}}}


def spec_of(**changes) -> JobSpec:
    data = json.loads(json.dumps(BASE))
    data.update(changes)
    return JobSpec.from_dict(data)


def test_example_specs_load_and_round_trip():
    for name in ("mwms.yaml", "ps.yaml", "tensorboard.yaml"):
        spec = load_spec(ROOT / "conf" / "jobs" / name)
        spec.check_entry_point()
        again = JobSpec.from_yaml(spec.to_yaml())
        assert again.to_dict() == spec.to_dict()
    ps = load_spec(ROOT / "conf/jobs/ps.yaml")
    assert ps.effective_strategy == "parameter_server" and ps.tf_roles == {"chief": 1, "ps": 1, "worker": 2}


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"queu": "x"}, "queu: unknown key"),
        ({"roles": {"worker": {"instances": 1, "memroy": 1}}}, "roles.worker.memroy: unknown key"),
        ({"roles": {"worker": {"instances": "two"}}}, "roles.worker.instances: expected int"),
        ({"roles": {"worker": {"instances": True}}}, "roles.worker.instances: expected int"),
        ({"roles": {"worker": {"memory": "lots"}}}, "roles.worker.memory: expected memory"),
        ({"roles": {"worker": {"instances": 0}}}, "roles.worker.instances: a job needs at least 1 worker"),
        ({"roles": {"chief": {}}}, "roles.worker.instances"),
        ({"roles": {"worker": {}, "painter": {}}}, "roles.painter: unknown key"),
        ({"roles": {"worker": {}, "ps": {}}, "strategy": "multi_worker_mirrored"}, "roles.ps"),
        ({"roles": {"worker": {}, "ps": {}}}, "roles.chief: strategy parameter_server needs a chief"),
        ({"roles": {"worker": {}, "tensorboard": {}}}, "log_dir"),
        ({"timeouts": {"barrier": -1}}, "timeouts.barrier: must be a positive number"),
        ({"timeouts": {"barrier": float("nan")}}, "timeouts.barrier: must be a positive number of seconds, got nan"),
        ({"timeouts": {"job": float("inf")}}, "timeouts.job: must be a positive number of seconds, got inf"),
        ({"timeouts": {"job": 1e12}}, "timeouts.job: must be a positive number of seconds, got 1e+12 (at most 31622"),
        ({"env": {"PYTHONPATH": "/x"}}, "env.PYTHONPATH: set by tfoy in every container"),
        ({"env": {"LD_LIBRARY_PATH": "/x"}}, "env.LD_LIBRARY_PATH: set by tfoy"),
        ({"env": {"TFOY_JOB": "{}"}}, "env.TFOY_JOB: tfoy's own; of its variables a job may set TFOY_HDFS_"),
        ({"env": {"TFOY_HDFS_RPC_TIMEOUTS": "9"}}, "env.TFOY_HDFS_RPC_TIMEOUTS: tfoy's own"),  # misspelt
        ({"env": {"A-B": "1"}}, "env.A-B: not an environment variable name"),
        ({"tags": ["x" * 101]}, "tags[0]: YARN takes tags of 1 to 100 characters, got 101"),
        ({"roles": {"worker": {"node_label": "gpu nodes"}}}, "roles.worker.node_label: not a YARN node label"),
        ({"args": "--x"}, "args: expected list"),
        ({"python_env": {"archive": None}}, "python_env"),
        ({"strategy": "magic"}, "strategy: one of"),
    ],
)
def test_bad_specs_name_the_key(changes, message):
    with pytest.raises(SpecError, match=re.escape(message)):
        spec_of(**changes)


def test_a_missing_local_file_is_named_before_anything_is_shipped(tmp_path):
    spec = tmp_path / "job.yaml"
    spec.write_text(yaml.safe_dump({**BASE, "files": {"toy_train.py": "nowhere/toy_train.py"}}))
    with pytest.raises(SpecError, match=re.escape(f"files.toy_train.py: {tmp_path}/nowhere/toy_train.py does not")):
        load_spec(spec)


def test_missing_required_keys():
    with pytest.raises(SpecError, match="entry_point: required"):
        JobSpec.from_dict({"roles": {"worker": {}}})
    with pytest.raises(SpecError, match="roles: required"):
        JobSpec.from_dict({"entry_point": "a:b"})
    with pytest.raises(SpecError, match="not valid YAML"):
        JobSpec.from_yaml("roles: [")


def test_memory_units():
    assert parse_memory(1024, "m") == 1024
    assert parse_memory("2 GiB", "m") == 2048
    assert parse_memory("1536m", "m") == 1536
    assert parse_memory("2g", "m") == 2048
    with pytest.raises(SpecError, match="must be positive"):
        parse_memory(0, "m")


def test_cli_overrides():
    data = apply_overrides(BASE, name="n", queue="etl", tags=["a", "b"],
                           sets=["roles.worker.instances=3", "timeouts.barrier=5", "args=[--epochs, '1']"])
    spec = JobSpec.from_dict(data)
    assert (spec.name, spec.queue, spec.tags) == ("n", "etl", ["a", "b"])
    assert spec.roles["worker"].instances == 3 and spec.timeouts.barrier == 5
    assert spec.args == ["--epochs", "1"]
    with pytest.raises(SpecError, match="--set"):
        apply_overrides(BASE, sets=["nokey"])
    with pytest.raises(SpecError, match=r"--set args: not a YAML value"):
        apply_overrides(BASE, sets=["args=[--data,x"])


def test_entry_point_checks(tmp_path):
    (tmp_path / "good.py").write_text("def main(args, ctx):\n    pass\n")
    (tmp_path / "broken.py").write_text("def main(args, ctx)\n    pass\n")
    spec = spec_of(entry_point="good:main", files={"good.py": str(tmp_path / "good.py")})
    spec.check_entry_point()
    with pytest.raises(SpecError, match="defines no function 'train'"):
        spec_of(entry_point="good:train", files={"good.py": str(tmp_path / "good.py")}).check_entry_point()
    with pytest.raises(SpecError, match="does not import: SyntaxError"):
        spec_of(entry_point="broken:main", files={"broken.py": str(tmp_path / "broken.py")}).check_entry_point()
    with pytest.raises(SpecError, match="module 'no_such_module_xyz' does not import"):
        spec_of(entry_point="no_such_module_xyz:main").check_entry_point()
    spec_of(entry_point="json:loads").check_entry_point()  # an installed module
    with pytest.raises(SpecError, match="script missing.py not found"):
        spec_of(entry_point="missing.py").check_entry_point()


def test_resources_above_cluster_maximum():
    spec = spec_of(roles={"chief": {"memory": "16 GiB"}, "worker": {}})
    with pytest.raises(SpecError, match=r"roles\.chief\.memory: 16384 MiB is above .* 8192 MiB"):
        cluster_checks.check_resources(spec, 8192, 4)
    with pytest.raises(SpecError, match=r"roles\.worker\.vcores: 8"):
        cluster_checks.check_resources(spec_of(roles={"worker": {"vcores": 8}}), 8192, 4)


def test_unreachable_resource_manager_is_named():
    with pytest.raises(cluster_checks.ClusterError, match=r"127\.0\.0\.1:1 \(yarn\.resourcemanager\.address\)"):
        cluster_checks.check_reachable("127.0.0.1:1", "ResourceManager", "yarn.resourcemanager.address", timeout=1)


def test_application_spec_translation_gpus_env_and_files():
    spec = spec_of(roles={"chief": {"memory": 1024}, "worker": {"instances": 2, "gpus": 2, "max_restarts": 3,
                                                               "node_label": "gpu"}},
                   env={"FOO": "bar", "TFOY_HDFS_RPC_TIMEOUT": "30"}, files={"data.txt": "/tmp/data.txt"},
                   tags=["t"])
    app = build_application_spec(spec, Shipping(code_zip="/tmp/code.zip",
                                                env_archive="hdfs://nn:8020/user/u/.tfoy/envs/k.tar.gz"))
    worker, chief = app.services["worker"], app.services["chief"]
    assert worker.resources.gpus == 2 and worker.resources.memory == 2048 and chief.resources.gpus == 0
    assert worker.instances == 2 and worker.max_restarts == 3 and worker.node_label == "gpu"
    assert "CUDA_VISIBLE_DEVICES" not in worker.env  # the GPU grant decides (see bootstrap)
    assert chief.env["CUDA_VISIBLE_DEVICES"] == ""  # CPU task hides GPUs
    assert str(worker.files["tfoy_env"].visibility) == "PUBLIC" and str(worker.files["tfoy_env"].type) == "ARCHIVE"
    assert str(worker.files["tfoy_code"].type) == "ARCHIVE"
    assert worker.script == "exec ./tfoy_env/bin/python3.11 -m tfnode.yarn.bootstrap"
    assert worker.env["FOO"] == "bar" and worker.env["TFOY_ROLE"] == "worker"
    assert worker.env["TFOY_HDFS_RPC_TIMEOUT"] == "30"  # a documented tuning setting reaches the tasks
    assert worker.env["PYTHONDONTWRITEBYTECODE"] == "1"  # never write into archives other containers share
    runtime = JobRuntime.decode(worker.env["TFOY_JOB"])
    assert runtime.roles == {"chief": 1, "worker": 2} and runtime.gpus == {"worker": 2} and runtime.restartable
    assert json.loads(base64.b64decode(worker.env["TFOY_JOB"]))["entry_point"] == "toy_train:main"
    assert app.queue == "default" and app.tags == {"t", "tfoy"}


def test_installed_python_ships_no_archive():
    spec = spec_of(python_env={"python": "/opt/py/bin/python3"})
    app = build_application_spec(spec, Shipping(code_zip="/tmp/c.zip", python="/opt/py/bin/python3"))
    assert "tfoy_env" not in app.services["worker"].files
    assert app.services["worker"].script.startswith("exec /opt/py/bin/python3 -m tfnode.yarn.bootstrap")


def test_cuda_visible_devices_follows_the_grant():
    assert cuda_visible_devices(0, {"CUDA_VISIBLE_DEVICES": "0,1"}) == ""
    assert cuda_visible_devices(1, {"NVIDIA_VISIBLE_DEVICES": "3,5"}) == "3"
    assert cuda_visible_devices(2, {"CUDA_VISIBLE_DEVICES": "2,3"}) == "2,3"
    assert cuda_visible_devices(2, {}) == "0,1"


def test_runtime_roles_and_strategy():
    ps = job_runtime(spec_of(roles={"chief": {}, "worker": {"instances": 2}, "ps": {}, "evaluator": {}}))
    assert ps.strategy == "parameter_server" and ps.serves_only("ps") and ps.serves_only("worker")
    assert not ps.serves_only("chief") and ps.waits_for_chief("evaluator") and ps.chief_task == ("chief", 0)
    mw = job_runtime(spec_of(roles={"worker": {"instances": 3}}))
    assert mw.chief_task == ("worker", 0) and not mw.serves_only("worker")


def test_barrier_key_parsing():
    keys = {"tfoy/addr/0/worker/1": b"h:2", "tfoy/addr/0/chief/0": b"h:1", "tfoy/gen": b"0", "tfoy/slot/x/0": b"c"}
    assert contract.parse_task_keys(keys, contract.addr_prefix(0)) == {("worker", 1): b"h:2", ("chief", 0): b"h:1"}
    assert kvb.expected_tasks({"chief": 1, "worker": 2}) == [("chief", 0), ("worker", 0), ("worker", 1)]
    err = kvb.BarrierTimeout(["worker:1"], 5)
    assert "never arrived: worker:1" in str(err)


def test_code_zip_contains_the_packages(tmp_path):
    z = build_code_zip(tmp_path / "code.zip", ROOT)
    names = zipfile.ZipFile(z).namelist()
    assert "tfnode/yarn/bootstrap.py" in names and "yarn_app/client.py" in names and "hdfs_io/paths.py" in names
    assert "hdfs_io/native/tf_bridge.cc" in names and not any("/target/" in n for n in names)
    # the native libraries ./build.sh setup built travel with the code (containers cannot build them)
    built = sorted(p.relative_to(ROOT).as_posix() for p in (ROOT / "hdfs_io" / "native").glob("*.so"))
    assert built and all(name in names for name in built)
    # and what their names are derived from: a container without them would not find the reader
    sources = [p.relative_to(ROOT).as_posix() for p in native_build.reader_sources()]
    assert "hdfs_io/native/crc_shim/src/lib.rs" in sources and all(name in names for name in sources)


def test_env_key_is_stable_and_depends_on_exclusions():
    from yarn_app.python_env import env_key

    assert env_key(("pyspark",)) == env_key(("pyspark",))
    assert env_key(("pyspark",)) != env_key(("pyspark", "numpy"))
    assert len(env_key()) == 16


def test_evaluator_is_not_a_member_of_the_training_cluster():
    from tfnode.cluster_spec import task_tf_config

    cluster = {"chief": ["h:1"], "worker": ["h:2"], "evaluator": ["h:3"]}
    ev = json.loads(task_tf_config(cluster, "evaluator", 0))
    assert ev == {"cluster": {"chief": ["h:1"], "worker": ["h:2"]}, "task": {"type": "evaluator", "index": 0}}
    assert "evaluator" not in json.loads(task_tf_config(cluster, "worker", 0))["cluster"]


def test_side_roles_may_fail_without_failing_the_application():
    spec = spec_of(roles={"chief": {"memory": 1024}, "worker": {"instances": 1}, "evaluator": {},
                          "tensorboard": {}}, log_dir="logs")
    app = build_application_spec(spec, Shipping(code_zip="/tmp/code.zip", python="/usr/bin/python3"))
    assert {r for r, s in app.services.items() if s.allow_failures} == {"evaluator", "tensorboard"}


class _Report:
    def __init__(self, state: str, final: str):
        self.state, self.final_status, self.diagnostics = state, final, ""


class _Container:
    def __init__(self, service: str, state: str, message: str = ""):
        self.service_name, self.instance, self.state, self.exit_message = service, 0, state, message
        self.yarn_container_id, self.id = f"container_{service}", f"{service}_0"


class _FakeYarn:
    """Just enough of skein's client and application client for `watch`: an evaluator killed mid-job."""

    def __init__(self):
        self.polls = 0
        self.kv = {}

    def application_report(self, app_id):
        self.polls += 1
        return _Report("RUNNING", "UNDEFINED") if self.polls < 6 else _Report("FINISHED", "SUCCEEDED")

    def connect(self, app_id, wait=False):
        return self

    def get_containers(self, states=None):
        evaluator = "FAILED" if self.polls > 2 else "RUNNING"
        return [_Container("chief", "RUNNING"), _Container("worker", "RUNNING"),
                _Container("evaluator", evaluator, "Container killed on request. Exit code is 137")]


def test_watch_names_a_side_role_that_ended_and_still_succeeds_and_records_it(monkeypatch, tmp_path):
    from yarn_app import history
    from yarn_app import watch as yw
    from yarn_app.errors import EXIT_OK

    class KV(dict):
        def get_prefix(self, prefix):
            return {}

    fake = _FakeYarn()
    fake.kv = KV()
    monkeypatch.setattr(yw, "POLL_S", 0)
    monkeypatch.setattr(cluster_checks, "tracking_url", lambda app_id: "")
    lines: list[str] = []
    spec = spec_of(roles={"chief": {}, "worker": {"instances": 1}, "evaluator": {}},
                   history_dir=f"file://{tmp_path}/history")
    assert yw.watch(fake, "application_1_0001", spec, out=lines.append) == EXIT_OK
    text = "\n".join(lines)
    assert "container container_evaluator of task evaluator:0 ended: Container killed" in text
    assert "training goes on without it" in text and "failed beside it: evaluator:0" in text
    record = history.read("application_1_0001", f"file://{tmp_path}/history")
    assert record["final_status"] == "SUCCEEDED" and record["exit_code"] == 0
    assert "Exit code is 137" in record["tasks"]["evaluator:0"]["failed_containers"]["container_evaluator"]


def test_secret_env_values_ship_as_a_private_file_not_in_any_environment(tmp_path):
    from yarn_app.shipping import write_secrets

    spec = spec_of(env={"PLAIN": "1", "API_TOKEN": "s3cr3t-value"}, security={"secret_env": ["API_TOKEN"]})
    secrets = write_secrets(spec, tmp_path)
    assert secrets and oct(Path(secrets).stat().st_mode & 0o777) == "0o600"
    app = build_application_spec(spec, Shipping(code_zip="/tmp/code.zip", python="/usr/bin/python3",
                                                secrets_file=secrets))
    for service in app.services.values():
        assert service.env["PLAIN"] == "1" and "API_TOKEN" not in service.env
        assert "s3cr3t-value" not in json.dumps(service.env)
        assert str(service.files["tfoy_secrets.json"].visibility) == "APPLICATION"
    with pytest.raises(SpecError, match=r"security\.secret_env\[0\]: NOPE is not a key of env"):
        spec_of(env={"A": "1"}, security={"secret_env": ["NOPE"]})
    with pytest.raises(SpecError, match=r"security\.principal: a keytab needs the principal"):
        spec_of(security={"keytab": "/etc/hosts"})


def test_python_env_shared_only_with_archive_auto():
    assert spec_of(python_env={"archive": "auto", "shared": True}).python_env.shared
    assert not spec_of(python_env={"archive": "auto"}).python_env.shared
    with pytest.raises(SpecError, match=r"python_env\.shared"):
        spec_of(python_env={"python": "/usr/bin/python3", "shared": True})
    with pytest.raises(SpecError, match=r"python_env\.shared: expected bool"):
        spec_of(python_env={"archive": "auto", "shared": "yes"})
