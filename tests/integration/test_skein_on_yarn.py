"""skein applications on the real YARN: key-value store, HDFS writes, failures and aggregated logs."""

from __future__ import annotations

import sys
import textwrap
import time

import pytest
import skein

from tests.conftest import run_cli

pytestmark = pytest.mark.integration

APP_TIMEOUT = 180


def wait_final(client: skein.Client, app_id: str, timeout: float = APP_TIMEOUT) -> skein.model.ApplicationReport:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        report = client.application_report(app_id)
        if str(report.state) in ("FINISHED", "FAILED", "KILLED"):
            return report
        time.sleep(1)
    client.kill_application(app_id)
    raise AssertionError(f"{app_id} did not finish within {timeout}s")


def python_service(tmp_path, body: str, instances: int = 1, **kw) -> skein.Service:
    script = tmp_path / "task.py"
    script.write_text(textwrap.dedent(body))
    return skein.Service(
        resources=skein.Resources(memory=256, vcores=1),
        instances=instances,
        files={"task.py": skein.File(source=str(script))},
        script=f"{sys.executable} task.py",
        **kw,
    )


def test_two_containers_write_kv_and_hdfs(skein_client, hdfs, hdfs_tmp, tmp_path):
    service = python_service(
        tmp_path,
        """
        import os, socket, time, skein
        from hdfs_io import fs
        cid = os.environ["SKEIN_CONTAINER_ID"]
        app = skein.ApplicationClient.from_current()
        fs.write_bytes(os.environ["OUT"] + "/" + cid, ("written by " + cid).encode())
        app.kv["done/" + cid] = socket.gethostname().encode()
        deadline = time.monotonic() + 120  # keep the AM (and its KV) alive until the test has read it
        while app.kv.get("release") is None and time.monotonic() < deadline:
            time.sleep(0.2)
        print("task", cid, "finished")
        """,
        instances=2,
        env={"OUT": hdfs_tmp},
    )
    spec = skein.ApplicationSpec(
        name="tfoy-test-kv-hdfs",
        queue="default",
        services={"task": service},
        master=skein.Master(resources=skein.Resources(memory=512, vcores=1)),
    )
    app = skein_client.submit_and_connect(spec)
    try:
        deadline = time.monotonic() + 120
        while len(app.kv.get_prefix("done/")) < 2 and time.monotonic() < deadline:
            time.sleep(0.5)
        assert sorted(app.kv.get_prefix("done/")) == ["done/task_0", "done/task_1"]
        app.kv["release"] = b"1"
        report = wait_final(skein_client, app.id)
    finally:
        if str(skein_client.application_report(app.id).state) not in ("FINISHED", "FAILED", "KILLED"):
            skein_client.kill_application(app.id)
    assert str(report.final_status) == "SUCCEEDED", report.diagnostics
    for i in range(2):
        with hdfs.read(f"{hdfs_tmp}/task_{i}") as r:
            assert r.read() == f"written by task_{i}".encode()


def test_failing_service_fails_the_application_and_logs_are_aggregated(skein_client, tmp_path):
    service = python_service(
        tmp_path,
        """
        import sys
        print("TFOY-MARKER stdout before failing", flush=True)
        sys.exit(1)
        """,
    )
    spec = skein.ApplicationSpec(
        name="tfoy-test-fail",
        services={"task": service},
        master=skein.Master(resources=skein.Resources(memory=512, vcores=1)),
    )
    app_id = skein_client.submit(spec)
    report = wait_final(skein_client, app_id)
    assert str(report.final_status) == "FAILED"
    assert "task" in report.diagnostics  # skein names the failed service

    # The container's stdout reaches HDFS through log aggregation, and `yarn logs` returns it.
    deadline = time.monotonic() + 90
    out = ""
    while time.monotonic() < deadline:
        out = run_cli("yarn", "logs", "-applicationId", app_id, check=False).stdout
        if "TFOY-MARKER stdout before failing" in out:
            break
        time.sleep(2)
    assert "TFOY-MARKER stdout before failing" in out, out[-2000:]


def test_yarn_application_cli_lists_and_reports(skein_client, tmp_path):
    service = python_service(tmp_path, "print('ok')")
    app_id = skein_client.submit(
        skein.ApplicationSpec(
            name="tfoy-test-cli",
            services={"task": service},
            master=skein.Master(resources=skein.Resources(memory=512, vcores=1)),
        )
    )
    wait_final(skein_client, app_id)
    status = run_cli("yarn", "application", "-status", app_id).stdout
    assert "tfoy-test-cli" in status and "SUCCEEDED" in status
    listing = run_cli("yarn", "application", "-list", "-appStates", "FINISHED").stdout
    assert app_id in listing
