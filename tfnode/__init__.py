"""What runs beside TensorFlow on each node, in its two modes: `yarn/` (the containers of `tfoy submit`) and
`spark/` (TensorFlowOnSpark's way); what both share is here: the context handed to user code, the cluster spec and
TF_CONFIG, Keras across workers, progress reports, the node's preparation, and contract.py (what the client and
the containers agree on).

TFoS names are served lazily (PEP 562 module `__getattr__`) so that `import tfnode` in a YARN container never
imports pyspark or TensorFlow: `from tfnode import TFCluster, TFNode, compat, TFParallel, dfutil, pipeline` replaces
`from tensorflowonspark import TFCluster, TFNode, compat, TFParallel, dfutil, pipeline`, and the modules of those
names (`from tfnode.TFCluster import InputMode`, `from tfnode.pipeline import TFEstimator`) import as TFoS's do.
"""

from __future__ import annotations

import importlib
from typing import Any

_MODULES = {"TFCluster": "tfnode.spark.cluster", "TFParallel": "tfnode.spark.parallel", "compat": "tfnode.compat",
            "dfutil": "tfnode.spark.dfutil", "pipeline": "tfnode.spark.pipeline", "TFNode": "tfnode.TFNode"}

__all__ = ["TFCluster", "TFNode", "TFParallel", "compat", "dfutil", "pipeline"]


def __getattr__(name: str) -> Any:
    if name in _MODULES:
        return importlib.import_module(_MODULES[name])
    raise AttributeError(f"module 'tfnode' has no attribute {name!r}")
