"""The job spec's errors, one kind a case: each a single SpecError whose message starts with the key path; and how
YAML's values (numbers, nulls) become the spec's."""

from __future__ import annotations

import json

import pytest

from yarn_app.entry_point import check_entry_point
from yarn_app.spec import JobSpec, SpecError, load_spec

BASE = {"entry_point": "toy_train:main", "roles": {"chief": {}, "worker": {"instances": 2}}}
ROLE_KEYS = "gpus, instances, max_restarts, memory, node_label, vcores"


def spec_of(**changes) -> JobSpec:
    return JobSpec.from_dict({**json.loads(json.dumps(BASE)), **changes})


def worker(**keys) -> dict:
    return {"roles": {"worker": keys}}


@pytest.mark.parametrize("changes, message", [
    # pydantic's own error types (spec._WORDS), by type
    ({"entry_point": None}, "entry_point: expected str, got NoneType None"),  # string_type
    ({"python_env": {"exclude": ["a", "b", 3]}}, "python_env.exclude[2]: expected str, got int 3"),
    (worker(instances="2"), "roles.worker.instances: expected int, got str '2'"),  # int_type
    (worker(instances=True), "roles.worker.instances: expected int, got bool True"),
    (worker(instances=2.5), "roles.worker.instances: expected int, got float 2.5"),
    ({"timeouts": {"job": "5"}}, "timeouts.job: expected int or float, got str '5'"),  # float_type
    ({"python_env": {"shared": "yes"}}, "python_env.shared: expected bool, got str 'yes'"),  # bool_type
    ({"args": "--x"}, "args: expected list, got str '--x'"),  # list_type
    ({"env": ["A=1"]}, "env: expected a mapping, got list ['A=1']"),  # dict_type
    ({"timeouts": [300]}, "timeouts: expected a mapping, got list [300]"),  # model_type
    (worker(instances=-1), "roles.worker.instances: must be >= 0, got -1"),  # greater_than_equal
    (worker(vcores=0), "roles.worker.vcores: must be >= 1, got 0"),
    ({"strategy": "magic"}, "strategy: one of auto, multi_worker_mirrored, parameter_server, got 'magic'"),  # literal
    ({"keras": "2"}, "keras: 2 (tf-keras) or 3 (TF's default Keras), got '2'"),
    ({"queu": "x"}, "queu: unknown key (allowed: args, entry_point, env, export_dir, files, history_dir, inputs, "
                    "keras, log_dir, model_dir, name, python_env, queue, roles, security, strategy, tags, timeouts)"),
    (worker(memroy=1), f"roles.worker.memroy: unknown key (allowed: {ROLE_KEYS})"),  # extra_forbidden, nested
    # our value types' own rules (a ValueError in a validator)
    ({"roles": {"worker": {}, "bogus": {}}}, "roles.bogus: unknown key (allowed: chief, evaluator, ps, tensorboard, "
                                             "worker)"),
    (worker(memory="lots"), "roles.worker.memory: expected memory (MiB or e.g. '2 GiB'), got str 'lots'"),
    (worker(memory="0.5k"), "roles.worker.memory: must be positive, got '0.5k'"),
    ({"args": ["--x", None]}, "args[1]: expected str, int or float, got NoneType None"),
    ({"env": {"A": True}}, "env.A: expected str, int or float, got bool True"),
    ({"timeouts": {"barrier": -1}}, "timeouts.barrier: must be a positive number of seconds, got -1"),
    ({"timeouts": {"progress": float("nan")}}, "timeouts.progress: must be a positive number of seconds, got nan"),
    ({"tags": ["ok", ""]}, "tags[1]: YARN takes tags of 1 to 100 characters, got 0"),
    ({"tags": ["ok", "café"]}, "tags[1]: YARN takes tags of printable ASCII characters only, got 'café'"),
    ({"tags": [f"t{i}" for i in range(9)]}, "tags: at most 8 tags (YARN takes 10, and tfoy adds 2), got 9"),
    ({"env": {"A-B": "1"}}, "env.A-B: not an environment variable name"),
    ({"env": {"TFOY_ROLE": "1"}}, "env.TFOY_ROLE: tfoy's own; of its variables a job may set"),
    ({"queue": "a b"}, "queue: not a queue name: 'a b'"),
    (worker(node_label="gpu nodes"), "roles.worker.node_label: not a YARN node label: 'gpu nodes'"),
    ({"security": {"view_acls": ["bob", "a b"]}}, "security.view_acls[1]: not a user name: 'a b'"),
    # the rules between keys (a section's validate())
    ({"python_env": {"archive": None}}, "python_env: give an archive ('auto' or a path) or the python installed"),
    ({"python_env": {"archive": "/envs/e.tar.gz", "shared": True}},
     "python_env.shared: only for archive: auto (tfoy packs and caches that one), not with archive: /envs/e.tar.gz"),
    ({"security": {"keytab": "/etc/krb5.keytab"}}, "security.principal: a keytab needs the principal"),
    ({"roles": {"worker": {}, "chief": {"instances": 2}}}, "roles.chief.instances: at most 1, got 2"),
    # what skein refuses only after the env has shipped (a ValueError there, exit 1)
    (worker(instances=2**31), "roles.worker.instances: must be <= 2147483647, got 2147483648"),  # less_than_equal
    (worker(max_restarts=2**31), "roles.worker.max_restarts: must be <= 2147483647"),
    ({"files": {"sub/helper.py": "h.py"}}, "files.sub/helper.py: a file name in the container's working folder, "
                                           "not a path: 'sub/helper.py'"),
    ({"files": {"..": "h.py"}}, "files...: a file name in the container's working folder, not a path: '..'"),
    ({"files": {"tfoy_code": "c.zip"}}, "files.tfoy_code: tfoy's own name in every container (tfoy_code, tfoy_env, "
                                        "tfoy_secrets.json): use another"),
    ({"python_env": {"archive": "none", "python": ""}}, "python_env.python: empty; give the interpreter's path"),
    ({"python_env": {"archive": " "}}, "python_env.archive: empty; give auto, none or the path of a packed env"),
])
def test_each_kind_of_error_is_one_spec_error_after_its_key(changes, message):
    with pytest.raises(SpecError) as err:
        spec_of(**changes)
    assert str(err.value).startswith(message), str(err.value)
    assert isinstance(err.value, ValueError)


def test_required_keys_and_the_top_level():
    with pytest.raises(SpecError, match=r"^entry_point: required \(package\.module:function or a script\.py\)$"):
        JobSpec.from_dict({"roles": {"worker": {}}})
    with pytest.raises(SpecError, match=r"^roles: required \(at least roles\.worker\.instances >= 1\)$"):
        JobSpec.from_dict({"entry_point": "m:f"})
    with pytest.raises(SpecError, match=r"^job spec: expected a mapping, got list \[1, 2\]$"):
        JobSpec.from_dict([1, 2])
    with pytest.raises(SpecError, match="^entry_point: required"):
        JobSpec.from_dict(None)


def test_a_misspelt_key_is_named_before_the_key_it_leaves_missing():
    with pytest.raises(SpecError, match="^entry_pont: unknown key"):
        JobSpec.from_dict({"entry_pont": "m:f", "roles": {"worker": {}}})


def test_strings_passed_on_take_numbers_and_other_keys_take_their_own_type():
    spec = spec_of(args=["--epochs", 5, 0.5], tags=[1], inputs=[2], files={"a": 3}, env={"N": 4, "F": 1.5},
                   roles={"worker": {"memory": "1.5 GiB"}}, timeouts={"job": 60})
    assert (spec.args, spec.tags, spec.inputs) == (["--epochs", "5", "0.5"], ["1"], ["2"])
    assert spec.files == {"a": "3"} and spec.env == {"N": "4", "F": "1.5"}
    assert spec.roles["worker"].memory == 1536 and spec.timeouts.job == 60.0 and isinstance(spec.timeouts.job, float)


def test_a_null_key_is_its_default_except_where_null_means_none():
    spec = spec_of(name=None, tags=None, env=None, python_env=None, timeouts={"progress": None}, security=None,
                   roles={"worker": None})
    assert (spec.name, spec.tags, spec.env, spec.timeouts.progress) == ("tfoy", [], {}, None)
    assert spec.roles["worker"].instances == 1 and spec.python_env.archive == "auto"
    assert spec_of(python_env={"archive": "none", "python": "/usr/bin/python3"}).python_env.archive is None
    assert spec_of(python_env={"python": "/usr/bin/python3"}).python_env.archive is None  # no archive shipped
    with pytest.raises(SpecError, match=r"^roles\.worker\.instances: expected int, got NoneType None$"):
        spec_of(roles={"worker": {"instances": None}})


def test_keys_set_after_construction_are_checked_by_validate_and_survive_to_dict():
    spec = spec_of(security={"principal": "me@EXAMPLE.COM"})
    spec.security.principal = "not a principal"  # as `tfoy submit --principal` does
    with pytest.raises(SpecError, match="^security.principal: not a Kerberos principal: 'not a principal'$"):
        spec.security.validate()
    spec = spec_of()
    spec.tags = [*spec.tags, "run-1"]
    spec.entry_point = "train.py"
    assert spec.to_dict()["tags"] == ["run-1"] and JobSpec.from_yaml(spec.to_yaml()).entry_point == "train.py"


@pytest.mark.parametrize("tag, message", [
    ("", "--reattach '': YARN takes tags of 1 to 100 characters, got 0"),
    ("run\n1", "--reattach 'run\\n1': YARN takes tags of printable ASCII characters only"),
    ("r" * 101, "YARN takes tags of 1 to 100 characters, got 101"),
])
def test_a_reattach_tag_is_held_to_the_tag_rules(tag, message):
    """The defect: `--reattach` joined the tags unchecked, so a bad one failed YARN's submission after the env was
    shipped and the run claimed."""
    spec = spec_of(tags=[f"t{i}" for i in range(7)])
    with pytest.raises(SpecError) as err:
        spec.add_reattach_tag(tag)
    assert message in str(err.value)
    spec.add_reattach_tag("T0")  # already there, as YARN compares them (lowercased)
    spec.add_reattach_tag("run-1")
    assert spec.tags[-1] == "run-1" and len(spec.tags) == 8
    with pytest.raises(SpecError, match="^--reattach 'run-2': at most 8 tags"):
        spec.add_reattach_tag("run-2")


def test_to_dict_is_plain_data_in_the_spec_order():
    data = spec_of().to_dict()
    assert json.loads(json.dumps(data)) == data
    assert list(data) == ["entry_point", "roles", "name", "queue", "tags", "args", "files", "env", "python_env",
                          "timeouts", "strategy", "keras", "model_dir", "export_dir", "log_dir", "inputs", "security",
                          "history_dir"]
    assert data["roles"]["chief"] == {"instances": 1, "memory": 2048, "vcores": 1, "gpus": 0, "node_label": None,
                                      "max_restarts": 0}


def test_an_entry_point_in_a_shipped_folder_is_found_and_parsed(tmp_path):
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "train.py").write_text("from json import loads as main\n")
    check_entry_point("pkg.train:main", {"pkg": str(tmp_path / "pkg")})
    with pytest.raises(SpecError, match=r"^entry_point: pkg\.train \(.*train\.py\) defines no function 'fit'$"):
        check_entry_point("pkg.train:fit", {"pkg": str(tmp_path / "pkg")})
    with pytest.raises(SpecError, match="^entry_point: expected package.module:function or a .py script"):
        check_entry_point("pkg.train", {})


def test_a_spec_file_that_is_not_a_mapping_is_named(tmp_path):
    path = tmp_path / "job.yaml"
    path.write_text("- entry_point: m:f\n")
    with pytest.raises(SpecError, match=r"^job spec: expected a mapping, got list \[\{'entry_point': 'm:f'\}\]$"):
        load_spec(path, name="n")
    path.write_text("entry_point: train.py\nroles: {worker: {}}\n")
    (tmp_path / "train.py").write_text("print(1)\n")
    spec = JobSpec.from_file(path)  # as load_spec: the script is found beside the spec and shipped
    assert spec.entry_point == "train.py" and spec.files == {"train.py": str(tmp_path / "train.py")}


def test_a_key_given_twice_is_refused_with_both_lines(tmp_path):
    """yaml.safe_load keeps the last: a second `roles:` silently replaced 4 workers of 8g by 1 of 2g."""
    text = "entry_point: m:f\nroles: {worker: {instances: 4, memory: 8g}}\nname: n\nroles: {worker: {}}\n"
    with pytest.raises(SpecError, match=r"^job spec: not valid YAML: duplicate key 'roles' \(first on line 2\)"):
        JobSpec.from_yaml(text)
    (tmp_path / "job.yaml").write_text(text)
    with pytest.raises(SpecError, match=r"job.yaml is not valid YAML: duplicate key 'roles' \(first on line 2\)"):
        load_spec(tmp_path / "job.yaml")


def test_a_spec_path_that_is_a_folder_or_not_text_is_named(tmp_path):
    with pytest.raises(SpecError, match=f"^job spec: {tmp_path} is a folder, not a YAML file$"):
        load_spec(tmp_path)
    (tmp_path / "job.yaml").write_bytes(b"entry_point: \xff\xfe\n")
    with pytest.raises(SpecError, match=r"job.yaml is not UTF-8 text \(byte 13\)$"):
        load_spec(tmp_path / "job.yaml")


def test_set_fills_a_null_section_and_names_an_empty_key():
    from yarn_app.spec import apply_overrides

    assert apply_overrides({"roles": {"worker": None}}, sets=["roles.worker.instances=3"]) == \
        {"roles": {"worker": {"instances": 3}}}
    with pytest.raises(SpecError, match=r"^--set =5: expected dotted.key=value, and '' has an empty key$"):
        apply_overrides({}, sets=["=5"])
    with pytest.raises(SpecError, match=r"^--set roles\.\.x=5: expected dotted.key=value"):
        apply_overrides({}, sets=["roles..x=5"])


def test_a_script_entry_point_given_by_absolute_path_is_shipped(tmp_path):
    """Only the edge node is sure to have it: runpy.run_path of the path failed in containers on other nodes."""
    (tmp_path / "train.py").write_text("print(1)\n")
    (tmp_path / "specs").mkdir()
    (tmp_path / "specs" / "job.yaml").write_text(f"entry_point: {tmp_path}/train.py\nroles: {{worker: {{}}}}\n")
    spec = load_spec(tmp_path / "specs" / "job.yaml")
    assert spec.entry_point == "train.py" and spec.files == {"train.py": str(tmp_path / "train.py")}


def test_an_entry_point_in_a_shipped_package_or_bound_in_a_block_is_found(tmp_path):
    """The container imports these; the check parsed only plain modules and top-level defs."""
    pkg = tmp_path / "mypkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("def main(args, ctx):\n    pass\n")
    (pkg / "sub" / "__init__.py").write_text("try:\n    from mypkg import main\nexcept ImportError:\n"
                                             "    main = None\nclass Job:\n    pass\n")
    (pkg / "star.py").write_text("from mypkg import *\n")
    files = {"mypkg": str(pkg)}
    for entry in ("mypkg:main", "mypkg.sub:main", "mypkg.sub:Job", "mypkg.star:main"):
        check_entry_point(entry, files)
    with pytest.raises(SpecError, match=r"^entry_point: mypkg\.sub \(.*__init__\.py\) defines no function 'fit'$"):
        check_entry_point("mypkg.sub:fit", files)


def test_a_script_found_only_in_the_shells_folder_is_refused(tmp_path, monkeypatch):
    """It passed the check (found in the current folder) but was not shipped (not beside the spec): the job then
    failed in its container with FileNotFoundError."""
    (tmp_path / "specs").mkdir()
    (tmp_path / "cwd").mkdir()
    (tmp_path / "cwd" / "train_cwd.py").write_text("def main(a, c): pass\n")
    (tmp_path / "specs" / "job.yaml").write_text("entry_point: train_cwd.py\nroles: {worker: {}}\n")
    monkeypatch.chdir(tmp_path / "cwd")
    spec = load_spec(tmp_path / "specs" / "job.yaml")
    with pytest.raises(SpecError, match=r"^entry_point: script train_cwd.py not found \(not in files, not beside"):
        spec.check_entry_point()


def test_yaml_merge_keys_and_dot_slash_file_names_are_a_users_valid_spec(tmp_path):
    """The duplicate-key check must not take `<<` for a key; `./name` is skein's spelling of `name`, one file."""
    (tmp_path / "train.py").write_text("def main(a, c): pass\n")
    text = ("entry_point: train.py\nfiles: {./train.py: train.py}\n"
            "roles:\n  chief: &role {memory: 1g}\n  worker: {<<: *role, instances: 2}\n")
    (tmp_path / "job.yaml").write_text(text)
    spec = load_spec(tmp_path / "job.yaml")
    assert spec.roles["worker"].memory == 1024 and spec.roles["worker"].instances == 2
    assert spec.files == {"train.py": str(tmp_path / "train.py")} and spec.entry_point == "train.py"
