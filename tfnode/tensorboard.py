"""How a TensorBoard server for a job is started (the tensorboard role on YARN, the chief's in Spark mode).

TensorBoard reads `log_dir` on HDFS itself: it is started through `tensorboard_command`, which registers hdfs_io's
filesystem in the TensorBoard process (TensorBoard reads through TF's tf.io.gfile), and event files written by
TF on hdfs:// are published whole at every flush, so it follows training as it goes. On YARN it runs as the
tensorboard role (tfnode/yarn/tensorboard_role.py).
"""

from __future__ import annotations

import sys

from hdfs_io.paths import absolute_uri

# TensorBoard's own entry point, after `import hdfs_io` (which gives TF hdfs:// as TensorBoard imports it)
_MAIN = "import sys, hdfs_io; from tensorboard.main import run_main; sys.argv[0] = 'tensorboard'; run_main()"


def tensorboard_command(logdir: str, port: int) -> list[str]:
    """The command that serves `logdir` (hdfs://, viewfs:// or local) on `port`, on every interface."""
    return [sys.executable, "-c", _MAIN, "--logdir", absolute_uri(logdir), "--port", str(port), "--bind_all"]
