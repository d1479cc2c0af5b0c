"""`import tfnode.dfutil` / `from tfnode.dfutil import …`, as with `tensorflowonspark.dfutil`: this name is
tfnode.spark.dfutil itself (one module object, so classes pickle and Spark ML stages save under one path)."""

import importlib
import sys

sys.modules[__name__] = importlib.import_module("tfnode.spark.dfutil")
