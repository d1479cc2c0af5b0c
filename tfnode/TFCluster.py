"""`import tfnode.TFCluster` / `from tfnode.TFCluster import …`, as with `tensorflowonspark.TFCluster`: this name is
tfnode.spark.cluster itself (one module object, so classes pickle and Spark ML stages save under one path)."""

import importlib
import sys

sys.modules[__name__] = importlib.import_module("tfnode.spark.cluster")
