"""Fixtures shared by the whole suite.

Integration tests need a real Hadoop cluster (the embedded one that `./build.sh test` starts, or a real one named
by HADOOP_CONF_DIR). Without one they fail, loudly and at once: a missing cluster is never a skip.
"""

from __future__ import annotations

import os
import socket
import subprocess
import uuid
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _site_value(conf_dir: Path, site: str, key: str) -> str | None:
    path = conf_dir / site
    if not path.exists():
        return None
    for prop in ET.parse(path).getroot().iter("property"):
        if prop.findtext("name") == key:
            return prop.findtext("value")
    return None


def _reachable(hostport: str) -> bool:
    host, port = hostport.rsplit(":", 1)
    try:
        with socket.create_connection((host, int(port)), timeout=3):
            return True
    except OSError:
        return False


@pytest.fixture(scope="session")
def hadoop_conf() -> Path:
    """HADOOP_CONF_DIR of a running cluster; fails the test if there is none."""
    conf = os.environ.get("HADOOP_CONF_DIR")
    if not conf or not (Path(conf) / "core-site.xml").exists():
        pytest.fail(f"HADOOP_CONF_DIR={conf!r} has no core-site.xml: run the suite through ./build.sh test")
    conf_dir = Path(conf)
    fs = _site_value(conf_dir, "core-site.xml", "fs.defaultFS") or ""
    nn = fs.removeprefix("hdfs://")
    rm = _site_value(conf_dir, "yarn-site.xml", "yarn.resourcemanager.address") or ""
    for what, addr in (("NameNode", nn), ("ResourceManager", rm)):
        if not addr or not _reachable(addr):
            pytest.fail(
                f"{what} at {addr or '(not configured)'} is not reachable: start it with ./build.sh hadoop start"
            )
    return conf_dir


@pytest.fixture(scope="session")
def hdfs(hadoop_conf):
    """The hdfs-native client of the cluster's defaultFS, as hdfs_io makes it (bounded connect); tests that check
    what is on HDFS use its own calls."""
    from hdfs_io import fs

    return fs.hdfs_client("/")


@pytest.fixture
def hdfs_tmp(hdfs):
    """A fresh HDFS folder for one test, removed afterwards."""
    path = f"/tmp/tfoy-test/{uuid.uuid4().hex[:12]}"
    hdfs.mkdirs(path, create_parent=True)
    yield path
    hdfs.delete(path, recursive=True)


@pytest.fixture(scope="session")
def skein_client(hadoop_conf):
    """One skein driver for the session (its JVM takes a couple of seconds to start)."""
    import skein

    with skein.Client() as client:
        yield client


def spark_context(conf):
    """A real SparkContext started from this (multi-threaded: TF, hdfs-native, gRPC) test process.

    pyspark launches its JVM with Popen(preexec_fn=...), which forks the interpreter and runs Python in the child:
    a lock held by another thread at that moment deadlocks the child before it execs (seen in the full suite).
    start_new_session=True gives the JVM the same isolation from Ctrl-C without running Python after the fork.
    """
    import subprocess as sp

    import pyspark.java_gateway as gateway
    from pyspark import SparkContext

    def popen(cmd, **kwargs):
        if kwargs.pop("preexec_fn", None) is not None:
            kwargs["start_new_session"] = True
        return sp.Popen(cmd, **kwargs)

    original = gateway.Popen
    gateway.Popen = popen
    try:
        return SparkContext(conf=conf)
    finally:
        gateway.Popen = original


def run_cli(*args: str, timeout: float = 120, check: bool = True, **kw) -> subprocess.CompletedProcess:
    """Runs a command (hdfs, yarn, tfoy ...) and returns its output; failures show stderr."""
    proc = subprocess.run(list(args), capture_output=True, text=True, timeout=timeout, **kw)
    if check and proc.returncode != 0:
        raise AssertionError(
            f"{' '.join(args)} exited {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
        )
    return proc
