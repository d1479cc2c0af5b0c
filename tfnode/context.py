"""The context handed to user code as `main(args, ctx)` / TFoS's `map_fun(args, ctx)`.

One dataclass for both YARN and Spark modes; it carries only facts about this node. Spark mode adds a feeding
manager (`mgr`); YARN mode adds model/export/log dirs from the job spec.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from hdfs_io.paths import absolute_uri, default_fs
from tfnode import cluster_spec as cs
from tfnode.contract import CHIEF_ROLES


@dataclass
class NodeContext:
    job_name: str
    task_index: int
    cluster_spec: dict[str, list[str]]
    executor_id: int = 0
    default_fs: str = field(default_factory=default_fs)
    working_dir: str = field(default_factory=os.getcwd)
    model_dir: str | None = None
    export_dir: str | None = None
    log_dir: str | None = None
    mgr: Any = None  # Spark mode: the feeding manager behind get_data_feed()
    tmp_socket: Any = None  # the socket reserving this task's port until TF binds it
    reporter: Any = None  # tfnode.progress.Reporter where this node has one (YARN tasks, Spark-mode nodes)

    def report(self, phase: str | None = None, **metrics: Any) -> None:
        """Progress for `tfoy submit` / `tfoy status` and the stall watchdog, from code that does not use
        model.fit (a custom loop): e.g. `ctx.report(epoch=2, step=300, loss=0.41, records_per_s=5200)`.
        Rate-limited; numbers only (anything else is dropped with one warning)."""
        if self.reporter is not None:
            self.reporter.report(phase=phase, **metrics)

    # ---- TFoS-compatible names -----------------------------------------------------------------------
    @property
    def defaultFS(self) -> str:  # noqa: N802 (TFoS's spelling, kept for drop-in use)
        return self.default_fs

    @property
    def worker_num(self) -> int:
        """TFoS's older name for executor_id (its TFParallel shards by it: `ds.shard(ctx.num_workers,
        ctx.worker_num)`)."""
        return self.executor_id

    @property
    def num_workers(self) -> int:
        return cs.num_workers(self.cluster_spec)

    @property
    def is_chief(self) -> bool:
        """The chief (or master) task; with neither in the spec, worker 0 (as MultiWorkerMirroredStrategy does)."""
        if any(r in self.cluster_spec for r in CHIEF_ROLES):
            return self.job_name in CHIEF_ROLES and self.task_index == 0
        return self.job_name == "worker" and self.task_index == 0

    @property
    def num_shards(self) -> int:
        return cs.worker_shard(self.cluster_spec, self.job_name, self.task_index)[0]

    @property
    def shard_index(self) -> int:
        return cs.worker_shard(self.cluster_spec, self.job_name, self.task_index)[1]

    def absolute_path(self, path: str) -> str:
        """A fully qualified URI for `path` on this cluster's defaultFS (TFoS's ctx.absolute_path); on a file://
        defaultFS a relative path is under working_dir (in Spark mode the driver's, as TFoS has it)."""
        if self.default_fs.startswith("file:") and not urlsplit(path).scheme and not path.startswith("/"):
            return "file://" + os.path.join(self.working_dir, path)
        return absolute_uri(path, self.default_fs)

    def tf_config(self) -> str:
        return cs.tf_config(self.cluster_spec, self.job_name, self.task_index)

    def export_tf_config(self) -> None:
        """Sets TF_CONFIG for this task (TFoS exports it only when the cluster has a chief/master)."""
        os.environ["TF_CONFIG"] = self.tf_config()

    def release_port(self) -> None:
        """Frees the reserved port just before TensorFlow's server binds it."""
        if self.tmp_socket is not None:
            self.tmp_socket.close()
            self.tmp_socket = None

    def get_data_feed(
        self, train_mode: bool = True, qname_in: str = "input", qname_out: str = "output", input_mapping: Any = None
    ):
        """The Spark-mode DataFeed for this node; only InputMode.SPARK has one."""
        if self.mgr is None:
            raise RuntimeError("get_data_feed(): this node has no feed (only TFCluster InputMode.SPARK feeds data)")
        from tfnode.spark.feed import DataFeed

        return DataFeed(self.mgr, train_mode, qname_in, qname_out, input_mapping)
