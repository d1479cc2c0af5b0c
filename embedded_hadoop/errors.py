"""The one error the embedded Hadoop raises (a daemon, the KDC, a template, WebHDFS): named apart from yarn_app's
ClusterError, which is about the user's cluster, not this test fixture."""

from __future__ import annotations


class EmbeddedHadoopError(RuntimeError):
    """The embedded cluster could not be set up, started or asked; the message names the daemon and its log."""
