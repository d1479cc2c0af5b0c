"""The tensorboard role: mirror log_dir from HDFS into the container and serve it on the app's tracking page.

TensorFlow 2.21 cannot read hdfs:// itself (TF core dropped it in 2.6, tensorflow-io no longer loads), so the
event files are copied with hdfs-native every few seconds (only new or grown files). The server is TensorBoard
when the package is installed, otherwise a plain HTTP listing of the mirrored logs, and is linked from the skein
web UI (`app.ui.add_page`) so it is one click from YARN's tracking URL. It stops when the chief has ended.
"""

from __future__ import annotations

import importlib.util
import logging
import socket
import subprocess
import sys
import time
from pathlib import Path

from hdfs_io.paths import absolute_uri, split_uri
from tfnode import barrier as kvb

log = logging.getLogger(__name__)
SYNC_INTERVAL_S = 5


def sync_from_hdfs(client, src_path: str, dest: Path, seen: dict[str, tuple[int, int]]) -> int:
    """Copies new or changed files under `src_path` into `dest`; returns how many were copied."""
    copied = 0
    try:
        entries = list(client.list_status(src_path, recursive=True))
    except FileNotFoundError:
        return 0
    for st in entries:
        if st.isdir:
            continue
        rel = st.path[len(src_path):].lstrip("/") if st.path.startswith(src_path) else Path(st.path).name
        stamp = (st.length, st.modification_time)
        if seen.get(rel) == stamp:
            continue
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        with client.read(st.path) as r:
            target.write_bytes(r.read())
        seen[rel] = stamp
        copied += 1
    return copied


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("", 0))
        return s.getsockname()[1]


def run_tensorboard(app, job, host: str) -> int:
    from hdfs_native import Client

    kv = app.kv
    print(f"tfoy task tensorboard:0 on {host}", flush=True)
    kvb.put_state(kv, "tensorboard", 0, "starting", host=host)
    _, _, src = split_uri(absolute_uri(job.log_dir))
    dest = Path("tb_logs").resolve()
    dest.mkdir(exist_ok=True)
    client = Client()
    seen: dict[str, tuple[int, int]] = {}
    sync_from_hdfs(client, src, dest, seen)
    port = _free_port()
    if importlib.util.find_spec("tensorboard") is not None:
        cmd = [sys.executable, "-m", "tensorboard.main", "--logdir", str(dest), "--port", str(port), "--bind_all"]
    else:
        log.warning("tensorboard is not installed in this environment: serving a listing of %s instead", src)
        cmd = [sys.executable, "-m", "http.server", str(port), "--directory", str(dest)]
    proc = subprocess.Popen(cmd)
    url = f"http://{host}:{port}"
    try:
        app.ui.add_page("tensorboard", url, link_name="TensorBoard")
    except Exception as e:  # the UI is a convenience: never fail the job for it
        log.warning("could not add the TensorBoard page to the web UI: %s", e)
    kvb.put_state(kv, "tensorboard", 0, "serving", host=host, url=url)
    try:
        while kv.get(kvb.outcome_key(*job.chief_task)) is None:
            if proc.poll() is not None:
                kvb.put_state(kv, "tensorboard", 0, "failed", host=host)
                return 1
            sync_from_hdfs(client, src, dest, seen)
            time.sleep(SYNC_INTERVAL_S)
    finally:
        proc.terminate()
    kvb.put_state(kv, "tensorboard", 0, "succeeded", host=host)
    return 0
