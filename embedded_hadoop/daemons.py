"""What the embedded cluster runs: its four daemons (main class, heap, the ports each binds), the default ports
(Hadoop's own, shifted by an offset so a second cluster can run beside) and the JVM flags Hadoop needs on Java 17.

Standard library only, as cluster.py.
"""

from __future__ import annotations

from dataclasses import dataclass

PORTS = {
    "NN_RPC_PORT": 8020,
    "NN_HTTP_PORT": 9870,
    "DN_PORT": 9866,
    "DN_HTTP_PORT": 9864,
    "DN_IPC_PORT": 9867,
    "RM_PORT": 8032,
    "RM_SCHEDULER_PORT": 8030,
    "RM_TRACKER_PORT": 8031,
    "RM_ADMIN_PORT": 8033,
    "RM_HTTP_PORT": 8088,
    "NM_PORT": 8041,
    "NM_LOCALIZER_PORT": 8040,
    "NM_HTTP_PORT": 8042,
    "NN_HTTPS_PORT": 9871,  # secure mode (HTTPS_ONLY)
    "DN_HTTPS_PORT": 9865,
    "KDC_PORT": 8288,
}
SECURE_PORT_OFFSET = 100
SIZING = {"NM_MEMORY_MB": 14336, "NM_VCORES": 8}


@dataclass(frozen=True)
class Daemon:
    name: str
    main: str
    heap_mb: int
    ports: tuple[str, ...]


DAEMONS = (
    Daemon("namenode", "org.apache.hadoop.hdfs.server.namenode.NameNode", 512,
           ("NN_RPC_PORT", "NN_HTTP_PORT", "NN_HTTPS_PORT")),
    Daemon(
        "datanode",
        "org.apache.hadoop.hdfs.server.datanode.DataNode",
        384,
        ("DN_PORT", "DN_HTTP_PORT", "DN_IPC_PORT", "DN_HTTPS_PORT"),
    ),
    Daemon(
        "resourcemanager",
        "org.apache.hadoop.yarn.server.resourcemanager.ResourceManager",
        768,
        ("RM_PORT", "RM_SCHEDULER_PORT", "RM_TRACKER_PORT", "RM_ADMIN_PORT", "RM_HTTP_PORT"),
    ),
    Daemon(
        "nodemanager",
        "org.apache.hadoop.yarn.server.nodemanager.NodeManager",
        512,
        ("NM_PORT", "NM_LOCALIZER_PORT", "NM_HTTP_PORT"),
    ),
)

# Java 17 closes JDK internals that Hadoop 3.5 still reaches into (as Hadoop's own scripts add them).
JAVA17_OPENS = [
    f"--add-opens=java.base/{pkg}=ALL-UNNAMED"
    for pkg in (
        "java.lang",
        "java.lang.reflect",
        "java.io",
        "java.net",
        "java.nio",
        "java.util",
        "java.util.concurrent",
        "java.util.concurrent.atomic",
        "sun.nio.ch",
        "sun.nio.cs",
        "sun.security.action",
        "sun.util.calendar",
    )
] + ["--add-exports=java.base/sun.net.dns=ALL-UNNAMED", "--add-exports=java.base/sun.net.util=ALL-UNNAMED"]
