"""TensorBoard for a job: the tensorboard role on YARN, and the chief's TensorBoard in Spark mode.

TensorBoard reads `log_dir` on HDFS itself: it is started through `tensorboard_command`, which registers hdfs_io's
filesystem in the TensorBoard process (TensorBoard reads through TF's tf.io.gfile), and event files written by
TF on hdfs:// are published whole at every flush, so it follows training as it goes. On YARN the server is linked
from the skein web UI (`app.ui.add_page`), one click from YARN's tracking URL, and stops when the chief has ended.
"""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys
import time

from hdfs_io.paths import absolute_uri
from tfnode import barrier as kvb
from tfnode.contract import TASK_BANNER

log = logging.getLogger(__name__)
POLL_S = 2
# TensorBoard's own entry point, after `import hdfs_io` (which gives TF hdfs:// as TensorBoard imports it)
_MAIN = "import sys, hdfs_io; from tensorboard.main import run_main; sys.argv[0] = 'tensorboard'; run_main()"


def tensorboard_command(logdir: str, port: int) -> list[str]:
    """The command that serves `logdir` (hdfs://, viewfs:// or local) on `port`, on every interface."""
    return [sys.executable, "-c", _MAIN, "--logdir", absolute_uri(logdir), "--port", str(port), "--bind_all"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("", 0))
        return s.getsockname()[1]


def run_tensorboard(app, job, host: str) -> int:
    kv = app.kv
    print(f"{TASK_BANNER} tensorboard:0 on {host}", flush=True)
    kvb.put_state(kv, "tensorboard", 0, "starting", host=host, pid=os.getpid())
    port = _free_port()
    proc = subprocess.Popen(tensorboard_command(job.log_dir, port))
    url = f"http://{host}:{port}"
    try:
        app.ui.add_page("tensorboard", url, link_name="TensorBoard")
    except Exception as e:  # the UI is a convenience: never fail the job for it
        log.warning("could not add the TensorBoard page to the web UI: %s", e)
    kvb.put_state(kv, "tensorboard", 0, "serving", host=host, url=url, pid=os.getpid())
    try:
        while not kvb.chief_has_ended(kv, job.chief_task, job.restartable):
            if proc.poll() is not None:
                log.error("TensorBoard exited with code %s while the job runs", proc.returncode)
                kvb.put_state(kv, "tensorboard", 0, "failed", host=host)
                return 1
            time.sleep(POLL_S)
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
    kvb.put_state(kv, "tensorboard", 0, "succeeded", host=host)
    return 0
