"""What a Kerberized submit asks delegation tokens for (yarn_app.application.other_filesystems), and the ACLs."""

from __future__ import annotations

from yarn_app.application import Shipping, build_application_spec, other_filesystems
from yarn_app.spec import JobSpec


def spec(**changes) -> JobSpec:
    data = {"entry_point": "toy_train:main", "roles": {"chief": {}, "worker": {"instances": 1}}}
    data.update(changes)
    return JobSpec.from_dict(data)


def test_every_other_namenode_the_job_names_gets_a_token(tmp_path, monkeypatch):
    (tmp_path / "core-site.xml").write_text(
        "<configuration><property><name>fs.defaultFS</name><value>hdfs://nn1:8020</value></property>"
        "</configuration>")
    monkeypatch.setenv("HADOOP_CONF_DIR", str(tmp_path))
    job = spec(inputs=["hdfs://nn2:8020/data", "/on/default", "hdfs://nn2:8020/more"],
               model_dir="viewfs://cluster/model", export_dir="relative/export", log_dir="hdfs://nn3:9000/logs",
               files={"big.zip": "hdfs://nn4:8020/f.zip", "local.py": "/tmp/local.py"})
    ship = Shipping(code_zip="/tmp/code.zip", env_archive="hdfs://nn5:8020/envs/e.tar.gz")
    assert other_filesystems(job, ship) == ["hdfs://nn2:8020", "viewfs://cluster", "hdfs://nn3:9000",
                                            "hdfs://nn4:8020", "hdfs://nn5:8020"]
    app = build_application_spec(job, ship, secure=True)
    assert app.file_systems == ["hdfs://nn2:8020", "viewfs://cluster", "hdfs://nn3:9000", "hdfs://nn4:8020",
                                "hdfs://nn5:8020"]
    assert app.acls.enable and app.acls.view_users == [] and app.acls.modify_users == []


def test_acls_from_the_spec_and_off_under_simple_authentication():
    job = spec(security={"view_acls": ["alice", "bob"], "modify_acls": ["alice"]})
    app = build_application_spec(job, Shipping(code_zip="/tmp/code.zip", python="/usr/bin/python3"), secure=True)
    assert app.acls.view_users == ["alice", "bob"] and app.acls.modify_users == ["alice"]
    assert app.acls.ui_users == ["alice", "bob"]
    plain = build_application_spec(job, Shipping(code_zip="/tmp/code.zip", python="/usr/bin/python3"))
    assert not plain.acls.enable
