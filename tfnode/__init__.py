"""What runs beside TensorFlow on each node: context, cluster spec / TF_CONFIG, start-up barrier, Spark mode.

TFoS names are served lazily (PEP 562 module `__getattr__`) so that `import tfnode` in a YARN container never
imports pyspark or TensorFlow: `from tfnode import TFCluster, TFNode, compat, TFParallel` replaces
`from tensorflowonspark import TFCluster, TFNode, compat, TFParallel`.
"""

from __future__ import annotations

import importlib
from types import SimpleNamespace
from typing import Any

_MODULES = {"TFCluster": "tfnode.spark", "compat": "tfnode.compat", "TFParallel": "tfnode.parallel"}

__all__ = ["TFCluster", "TFNode", "TFParallel", "compat"]


def hdfs_path(ctx: Any, path: str) -> str:
    """TFoS's TFNode.hdfs_path: a fully qualified URI for `path` on the node's defaultFS."""
    return ctx.absolute_path(path)


def __getattr__(name: str) -> Any:
    if name in _MODULES:
        return importlib.import_module(_MODULES[name])
    if name == "TFNode":
        from tfnode.feed import DataFeed

        return SimpleNamespace(DataFeed=DataFeed, hdfs_path=hdfs_path)
    raise AttributeError(f"module 'tfnode' has no attribute {name!r}")
