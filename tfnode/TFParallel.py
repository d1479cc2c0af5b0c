"""`import tfnode.TFParallel` / `from tfnode.TFParallel import …`, as with `tensorflowonspark.TFParallel`: this name is
tfnode.spark.parallel itself (one module object, so classes pickle and Spark ML stages save under one path)."""

import importlib
import sys

sys.modules[__name__] = importlib.import_module("tfnode.spark.parallel")
