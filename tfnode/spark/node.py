"""The TF process of one Spark executor: `python -m tfnode.spark.node <launch file>`.

Why a fresh process (not a fork of the Spark python worker, as TFoS does): TF must not inherit the worker's
threads and sockets, and the node must outlive the start task. The start task (`launch`) writes a launch file,
starts this module, and waits until the node is registered and the cluster is complete (`node.json` appears) or
the node failed (`error.txt` appears / the process exits).

Inside: reserve the TF port, start the feed (InputMode.SPARK), register with the driver, run `map_fun(args, ctx)`,
report done/failed. The driver connection is the lifeline: `stop` ends the node after `grace_secs`, and a lost
connection ends it at once, taking its TensorBoard with it.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import sys
import threading
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tfnode import progress
from tfnode.context import NodeContext
from tfnode.contract import CHIEF_ROLES, FEEDLESS_ROLES
from tfnode.prepare import prepare_node
from tfnode.spark.feed import NodeFeed
from tfnode.spark.reservation import ReservationClient, host_address
from tfnode.tensorboard import tensorboard_command

log = logging.getLogger(__name__)

SPARK_PROGRESS_EVERY_S = 10.0  # progress lines in the driver's log: at most this often per node (and each epoch)
EXECUTOR_POLL_S = 2.0


@dataclass
class NodeLaunch:
    """Everything a node needs; cloudpickled by the start task into the node's private state folder."""

    map_fun: Any
    tf_args: Any
    executor_id: int
    job_name: str
    task_index: int
    server_address: tuple[str, int]
    secret: bytes
    spark_feed: bool
    reservation_timeout: float
    log_dir: str | None
    tensorboard: bool
    release_port: bool
    keras: int | None = None  # 2: tf-keras as tf.keras (set in the node's environment by the start task)
    # the driver's, as TFoS's ctx has them: fs.defaultFS of its Hadoop configuration (spark.hadoop.* included) and
    # its working folder (where relative file:// paths point)
    default_fs: str | None = None
    working_dir: str | None = None
    executor_pid: int | None = None  # the executor JVM: when it is gone, so is this node (see _watch_executor)


class Node:
    def __init__(self, launch: NodeLaunch, folder: Path, reporter: progress.Reporter | None = None,
                 sink: progress.ControlSink | None = None) -> None:
        self.launch = launch
        self.folder = folder
        self.reporter, self.sink = reporter, sink
        self.feed: NodeFeed | None = None
        self.tensorboard: subprocess.Popen | None = None
        self.client: ReservationClient | None = None
        self._finished = threading.Event()

    def run(self) -> int:
        la = self.launch
        try:
            host = host_address()
            tmp_socket = socket.create_server(("0.0.0.0", 0))
            port = tmp_socket.getsockname()[1]
            if la.spark_feed and la.job_name not in FEEDLESS_ROLES:
                self.feed = NodeFeed(la.secret, host=host)  # reachable: tasks on ps/evaluator executors feed it
            self.client = ReservationClient(la.server_address, la.secret)
            spec = self.client.register(
                {"executor_id": la.executor_id, "host": host, "port": port, "pid": os.getpid(),
                 "job_name": la.job_name, "task_index": la.task_index,
                 "feed_port": self.feed.port if self.feed else None},
                timeout=la.reservation_timeout + 30)
            self.client.listen(self._on_control, self._on_lost)
            if self.sink is not None:
                self.sink.client = self.client
            if la.executor_pid:
                threading.Thread(target=self._watch_executor, args=(la.executor_pid,), daemon=True,
                                 name="tfoy-executor-lifeline").start()
            ctx = NodeContext(job_name=la.job_name, task_index=la.task_index, cluster_spec=spec,
                              executor_id=la.executor_id, log_dir=la.log_dir, mgr=self.feed, tmp_socket=tmp_socket,
                              reporter=self.reporter)
            if la.default_fs:
                ctx.default_fs = la.default_fs
            if la.working_dir:
                ctx.working_dir = la.working_dir
            if any(r in spec for r in CHIEF_ROLES):
                ctx.export_tf_config()
            if la.tensorboard and ctx.is_chief:
                self._start_tensorboard(host)
            self._write("node.json", json.dumps({
                "executor_id": la.executor_id, "job_name": la.job_name, "task_index": la.task_index,
                "pid": os.getpid(), "executor_pid": la.executor_pid,
                "feed_host": host, "feed_port": self.feed.port if self.feed else None}))
            if la.release_port:
                ctx.release_port()
            if isinstance(la.tf_args, list):  # TFoS: argparse in map_fun parses the list it was given
                sys.argv = la.tf_args
            la.map_fun(la.tf_args, ctx)
        except BaseException:  # noqa: BLE001 - every failure is reported with its traceback, then the node exits
            tb = traceback.format_exc()
            self._write("error.txt", f"{la.job_name}:{la.task_index} (executor {la.executor_id}):\n{tb}")
            log.error("map_fun failed:\n%s", tb)
            self._report({"op": "failed", "traceback": tb})
            self._cleanup()
            return 1
        self._write("finished", "map_fun returned\n")
        self._report({"op": "done"})
        self._cleanup()
        return 0

    def _report(self, msg: dict[str, Any]) -> None:
        if self.client is not None:
            try:
                self.client.send(msg)
            except OSError:
                pass

    def _write(self, name: str, text: str) -> None:
        tmp = self.folder / f".{name}.tmp"
        tmp.write_text(text)
        tmp.replace(self.folder / name)

    def _on_control(self, msg: dict[str, Any]) -> None:
        op = msg.get("op")
        if op == "end_feed" and self.feed is not None:
            self.feed.end_of_feed.set()
        elif op == "stop":
            if self.feed is not None:
                self.feed.end_of_feed.set()
            grace = float(msg.get("grace_secs", 0))
            threading.Thread(target=self._stop_after, args=(grace,), daemon=True).start()

    def _stop_after(self, grace: float) -> None:
        if self._finished.wait(grace):
            return
        log.info("stop: map_fun still running after %gs, ending this node", grace)
        if self.feed is not None:
            self.feed.terminate()
        self._cleanup()
        os._exit(0)

    def _on_lost(self) -> None:
        if self._finished.is_set():
            return
        log.error("lost the driver connection: ending this node")
        self._cleanup()
        os._exit(3)

    def _watch_executor(self, pid: int) -> None:
        """Ends this node when its executor JVM has died (kill -9, a lost container): Spark then reruns the work
        elsewhere, and a node left behind would hold its GPU, ports and memory until the driver ends."""
        start = _start_time(pid)
        while not self._finished.wait(EXECUTOR_POLL_S):
            if _start_time(pid) != start:  # gone, or its pid reused by another process
                log.error("executor JVM %d is gone: ending this node", pid)
                self._report({"op": "failed", "traceback": f"the executor JVM (pid {pid}) of this node died"})
                self._cleanup()
                os._exit(4)

    def _start_tensorboard(self, host: str) -> None:
        import importlib.util

        if importlib.util.find_spec("tensorboard") is None:
            log.warning("tensorboard=True but the tensorboard package is not installed: no TensorBoard started")
            return
        with socket.socket() as s:
            s.bind(("0.0.0.0", 0))
            tb_port = s.getsockname()[1]
        logdir = self.launch.log_dir or f"file://{self.folder / 'tensorboard'}"
        self.tensorboard = subprocess.Popen(
            tensorboard_command(logdir, tb_port),
            stdout=subprocess.DEVNULL, stderr=open(self.folder / "tensorboard.log", "ab"), start_new_session=True)
        self._report({"op": "tensorboard", "url": f"http://{host}:{tb_port}"})

    def _cleanup(self) -> None:
        self._finished.set()
        if self.feed is not None:
            self.feed.close()
        if self.tensorboard is not None and self.tensorboard.poll() is None:
            self.tensorboard.terminate()
            try:
                self.tensorboard.wait(10)
            except subprocess.TimeoutExpired:
                self.tensorboard.kill()


def _start_time(pid: int) -> str | None:
    """A process's start time (field 22 of /proc/<pid>/stat): with the pid, it names one process for good."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def main(argv: list[str]) -> int:
    import pickle

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    launch_file = Path(argv[1])
    sink = progress.ControlSink()
    reporter = progress.Reporter(sink, every_s=SPARK_PROGRESS_EVERY_S)
    prepare_node(reporter=reporter)  # before the launch is unpickled: that imports the user's modules (TF, Keras)
    with open(launch_file, "rb") as f:
        launch: NodeLaunch = pickle.load(f)  # written by our own start task into a 0700 folder
    launch_file.unlink()
    code = Node(launch, launch_file.parent, reporter, sink).run()
    sys.stdout.flush()
    sys.stderr.flush()
    time.sleep(0.1)
    os._exit(code)  # TF's threads must not keep a finished node alive


if __name__ == "__main__":
    sys.exit(main(sys.argv))
