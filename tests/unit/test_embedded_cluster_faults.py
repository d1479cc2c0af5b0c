"""Start-up faults of the embedded cluster controller, provoked without Hadoop: a taken port, a dying daemon."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys

from tests.conftest import ROOT

CLUSTER = str(ROOT / "embedded_hadoop" / "cluster.py")
# far from the running embedded cluster's ports (8020-9870), and every shifted port (21020-22870) below the
# kernel's ephemeral range (32768-60999): at 23000 an outgoing connection anywhere on the machine could hold one
# (CI once saw "port 32866 (datanode DN_PORT) is already in use")
OFFSET = 13000


def run_cluster(tmp_path, *args, java_script: str | None = None):
    lib = tmp_path / "lib"
    lib.mkdir(exist_ok=True)
    (lib / "hadoop-common-3.5.0.jar").write_bytes(b"")
    env = dict(
        os.environ,
        TFOY_HADOOP_LIB=str(lib),
        TFOY_HADOOP_STATE=str(tmp_path / "state"),
        TFOY_HADOOP_PORT_OFFSET=str(OFFSET),
        TFOY_START_TIMEOUT="20",
    )
    if java_script is not None:
        java_home = tmp_path / "jdk"
        (java_home / "bin").mkdir(parents=True)
        (java_home / "bin" / "java").write_text(java_script)
        (java_home / "bin" / "java").chmod(0o755)
        env["JAVA_HOME"] = str(java_home)
    return subprocess.run([sys.executable, CLUSTER, *args], capture_output=True, text=True, env=env, timeout=60)


def test_taken_port_is_named(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 8020 + OFFSET))
        s.listen()
        proc = run_cluster(tmp_path, "start", java_script="#!/bin/sh\nexit 0\n")
    assert proc.returncode == 1
    assert f"port {8020 + OFFSET} (namenode NN_RPC_PORT) is already in use" in proc.stderr


def test_daemon_dying_at_start_shows_its_log(tmp_path):
    # A NameNode that is already formatted, and a "java" that complains and dies like a broken daemon would.
    version = tmp_path / "state" / "data" / "namenode" / "current"
    version.mkdir(parents=True)
    (version / "VERSION").write_text("formatted\n")
    proc = run_cluster(tmp_path, "start", java_script="#!/bin/sh\necho 'FATAL simulated daemon failure' >&2\nexit 1\n")
    assert proc.returncode == 1
    # every fake daemon dies; whichever is seen first is named (CI once saw the datanode before the namenode)
    assert re.search(r"(namenode|datanode|resourcemanager|nodemanager) died during start-up", proc.stderr), proc.stderr
    assert "FATAL simulated daemon failure" in proc.stderr  # the tail of its .out log
    # and nothing was left running
    status = run_cluster(tmp_path, "status")
    assert status.returncode == 3 and "running" not in status.stdout


def test_missing_jars_say_what_to_run(tmp_path):
    env = dict(os.environ, TFOY_HADOOP_LIB=str(tmp_path / "nothing"), TFOY_HADOOP_STATE=str(tmp_path / "s"))
    proc = subprocess.run([sys.executable, CLUSTER, "start"], capture_output=True, text=True, env=env, timeout=30)
    assert proc.returncode == 2 and "./build.sh setup" in proc.stderr
