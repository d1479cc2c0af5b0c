"""The embedded cluster's own lifecycle promises: start is idempotent, status reports the four daemons."""

from __future__ import annotations

import json
import os
import sys

import pytest

from tests.conftest import ROOT, run_cli

pytestmark = pytest.mark.integration
CLUSTER = str(ROOT / "embedded_hadoop" / "cluster.py")


def test_second_start_starts_no_second_set_of_daemons(hadoop_conf):
    before = json.loads(run_cli(sys.executable, CLUSTER, "status", "--json").stdout)
    out = run_cli(sys.executable, CLUSTER, "start").stdout
    after = json.loads(run_cli(sys.executable, CLUSTER, "status", "--json").stdout)
    assert "already running" in out
    assert {n: d["pid"] for n, d in before["daemons"].items()} == {n: d["pid"] for n, d in after["daemons"].items()}
    assert set(after["daemons"]) == {"namenode", "datanode", "resourcemanager", "nodemanager"}
    assert after["hdfs_ready"] and after["yarn_ready"]


def test_stop_with_nothing_running_exits_zero(tmp_path):
    env = dict(os.environ, TFOY_HADOOP_STATE=str(tmp_path / "empty-state"))
    proc = run_cli(sys.executable, CLUSTER, "stop", env=env)
    assert "nothing to stop" in proc.stdout
