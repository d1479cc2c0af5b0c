"""The MNIST walk-through on the real YARN + HDFS, small: data set-up → `tfoy submit` training (chief + worker,
MultiWorkerMirroredStrategy) → exported version → `tfoy submit` inference → prediction parts and accuracy."""

from __future__ import annotations

import os
import pty
import re
import select
import signal
import subprocess
import sys
import time

import pytest

from examples.mnist.mnist_inference import accuracy
from hdfs_io.export import list_versions
from tests.conftest import ROOT, run_cli

pytestmark = pytest.mark.integration
RECORDS = 600


def test_train_export_and_infer_on_yarn(hdfs, hdfs_tmp):
    base = hdfs_tmp
    data, export, preds = f"{base}/data", f"{base}/export", f"{base}/predictions"
    run_cli(sys.executable, "-m", "examples.mnist.mnist_data_setup", "--output", data, "--format", "tfr",
            "--limit", str(RECORDS), "--num-partitions", "4", cwd=ROOT, timeout=300)

    train = run_cli("tfoy", "submit", "conf/jobs/mnist_train.yaml", "--set", f"model_dir={base}/model",
                    "--set", f"export_dir={export}", "--set", "roles.chief.memory=1536",
                    "--set", "roles.worker.memory=1536",
                    "--set", f"args=[--data,{data},--epochs,2,--train-records,{RECORDS},--batch-size,32]",
                    cwd=ROOT, timeout=900)
    assert "FINISHED SUCCEEDED" in train.stdout
    # progress while it ran, as a scheduler's log shows it (a pipe: plain lines)
    assert re.search(r"chief:0 +\w+ +epoch [12]/2 step \d+ loss [0-9.]+ accuracy [0-9.]+", train.stdout), \
        train.stdout[-3000:]
    assert list_versions(export) == [1]
    # the backups the chief wrote after each epoch
    backups = sorted(s.path.rsplit("/", 1)[-1] for s in hdfs.list_status(f"{base}/model/backup"))
    assert backups == ["ckpt-1", "ckpt-2"]

    infer = run_cli("tfoy", "submit", "conf/jobs/mnist_inference.yaml", "--set", "roles.worker.memory=1536",
                    "--set", f"args=[--data,{data},--model,{export},--output,{preds}]", cwd=ROOT, timeout=600)
    assert "FINISHED SUCCEEDED" in infer.stdout
    acc, n = accuracy(preds)
    assert n == RECORDS  # every test record predicted once, across both workers' shards
    assert acc > 0.3  # 10 classes: well above chance after two small epochs


def _read_until(fd: int, pattern: str, timeout: float) -> str:
    """What a terminal shows, read from the pty master until `pattern` appears (or the time is up)."""
    seen, deadline = b"", time.monotonic() + timeout
    while time.monotonic() < deadline and not re.search(pattern, seen.decode(errors="replace")):
        if select.select([fd], [], [], 1.0)[0]:
            try:
                chunk = os.read(fd, 65536)
            except OSError:  # the child closed the terminal
                break
            if not chunk:
                break
            seen += chunk
    return seen.decode(errors="replace")


def test_on_a_terminal_progress_is_live_and_ctrl_c_kills_and_records_the_job(hdfs_tmp):
    """`tfoy submit` of the demo's trainer on a pseudo-terminal: live lines with epoch, loss and accuracy; Ctrl-C
    kills the application and the job history records it as killed."""
    import json

    data = f"{hdfs_tmp}/data"
    run_cli(sys.executable, "-m", "examples.mnist.mnist_data_setup", "--output", data, "--format", "tfr",
            "--limit", "2000", "--num-partitions", "2", cwd=ROOT, timeout=300)
    master, slave = pty.openpty()
    proc = subprocess.Popen(["tfoy", "submit", "conf/jobs/mnist_train.yaml", "--set", f"model_dir={hdfs_tmp}/model",
                             "--set", f"export_dir={hdfs_tmp}/export", "--set", "roles.chief.memory=1536",
                             "--set", "roles.worker.memory=1536",
                             "--set", f"args=[--data,{data},--epochs,50,--train-records,2000,--batch-size,32]"],
                            stdin=slave, stdout=slave, stderr=slave, cwd=ROOT, env=dict(os.environ, COLUMNS="160"))
    os.close(slave)
    try:
        # the chief's own line: its metrics are what the history must keep (a worker's line may come first)
        screen = _read_until(master, r"chief:0[^\n]*epoch \d+/50 step \d+ loss [0-9.]+ accuracy [0-9.]+", 600)
        app = re.search(r"application id: (application_\d+_\d+)", screen)
        assert app, screen[-3000:]
        assert re.search(r"epoch \d+/50 step \d+ loss [0-9.]+ accuracy [0-9.]+", screen), screen[-3000:]
        assert "\x1b[" in screen  # drawn in place by the terminal view, not printed as log lines
        proc.send_signal(signal.SIGINT)
        screen += _read_until(master, r"interrupted: killed", 120)
        assert proc.wait(120) == 130, screen[-3000:]
    finally:
        if proc.poll() is None:
            proc.kill()
        os.close(master)
    assert f"interrupted: killed {app.group(1)}" in screen
    deadline = time.monotonic() + 60
    while True:  # the ResourceManager finishes the kill, then status reads the job history
        record = json.loads(run_cli("tfoy", "status", app.group(1), "--json", timeout=120).stdout)
        if record.get("format") or time.monotonic() > deadline:
            break
        time.sleep(2)
    assert record["state"] == "KILLED" and record["exit_code"] == 130, record
    assert record["tasks"]["chief:0"]["metrics"].get("accuracy") is not None, record["tasks"]
