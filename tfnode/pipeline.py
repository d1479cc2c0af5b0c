"""`import tfnode.pipeline` / `from tfnode.pipeline import …`, as with `tensorflowonspark.pipeline`: this name is
tfnode.spark.pipeline itself (one module object, so classes pickle and Spark ML stages save under one path)."""

import importlib
import sys

sys.modules[__name__] = importlib.import_module("tfnode.spark.pipeline")
