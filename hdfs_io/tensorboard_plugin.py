"""`tensorboard --logdir hdfs://…` with nothing imported by hand.

TensorBoard loads every `tensorboard_plugins` entry point at start-up, before it reads a log directory. This one
(declared in pyproject.toml) only imports hdfs_io, which registers hdfs:// and viewfs:// with TensorFlow as soon as
TensorBoard imports it; it adds no dashboard (load() returns None, which TensorBoard skips).
"""

from __future__ import annotations

from tensorboard.plugins import base_plugin

import hdfs_io  # noqa: F401 - the registration is the point of this module


class HdfsFilesystemLoader(base_plugin.TBLoader):
    def load(self, context):  # noqa: ARG002 - TensorBoard's interface
        return None
