"""TFoS's `TFNode` module for code inside map_fun: `DataFeed`, `hdfs_path(ctx, path)`, `release_port(ctx)`.

`from tfnode import TFNode` and `from tfnode.TFNode import DataFeed` both give these. TFoS's TF1-only helpers
(`start_cluster_server`, `export_saved_model`, `next_batch`, `batch_results`, `terminate`) raise in TFoS under TF 2
and are not here; DataFeed has the last three as methods.
"""

from __future__ import annotations

from typing import Any

from tfnode.spark.feed import DataFeed

__all__ = ["DataFeed", "hdfs_path", "release_port"]


def hdfs_path(ctx: Any, path: str) -> str:
    """A fully qualified URI for `path` on the node's defaultFS (TFoS's TFNode.hdfs_path)."""
    return ctx.absolute_path(path)


def release_port(ctx: Any) -> None:
    """Frees the port reserved for this node's TF server (with TFCluster.run(release_port=False))."""
    ctx.release_port()
