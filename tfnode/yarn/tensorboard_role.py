"""The tensorboard role of a YARN job: serves `log_dir` while the job trains, and stops when the chief has ended.

The server is linked from the skein web UI (`app.ui.add_page`), one click from YARN's tracking URL. It is not in
the TF cluster (contract.SIDE_ROLES): its end never decides the job's.
"""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import time

from tfnode.contract import TASK_BANNER
from tfnode.tensorboard import tensorboard_command
from tfnode.yarn import barrier as kvb

log = logging.getLogger(__name__)
POLL_S = 2


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
