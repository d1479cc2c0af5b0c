"""Builds embedded_hadoop/native/hadoop_posix.c into the libhadoop.so that the secure NodeManager loads.

A Kerberized NodeManager opens container logs only through SecureIOUtils, and that needs Hadoop's native library
(see the C file for why and what it holds). The build is one C compiler call (under a second), done when the
source changed, into the cluster's state folder. Standard library only, as cluster.py.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from pathlib import Path

if __package__:
    from embedded_hadoop.errors import EmbeddedHadoopError
else:  # imported by cluster.py run as a script
    from errors import EmbeddedHadoopError

SOURCE = Path(__file__).resolve().parent / "native" / "hadoop_posix.c"


def java_home_of(java_home: str | None) -> Path:
    """JAVA_HOME, or the JDK the `java` on PATH belongs to (its include/ holds jni.h)."""
    if java_home:
        return Path(java_home)
    java = shutil.which("java")
    if not java:
        raise EmbeddedHadoopError("no java on PATH and JAVA_HOME unset: the secure NodeManager's libhadoop.so "
                                  "needs the JDK's jni.h")
    return Path(java).resolve().parent.parent


def build(state: Path, java_home: str | None) -> Path:
    """The folder holding libhadoop.so (for -Djava.library.path), built if the source changed since last time."""
    out_dir = state / "native"
    lib = out_dir / "libhadoop.so"
    stamp = out_dir / "libhadoop.so.sha256"
    digest = hashlib.sha256(SOURCE.read_bytes()).hexdigest()
    if lib.exists() and stamp.exists() and stamp.read_text() == digest:
        return out_dir
    jdk = java_home_of(java_home)
    include = jdk / "include"
    if not (include / "jni.h").exists():
        raise EmbeddedHadoopError(f"{include / 'jni.h'} not found: the secure NodeManager's libhadoop.so is built "
                                  "against the JDK's JNI headers (set JAVA_HOME to a JDK, not a JRE)")
    out_dir.mkdir(parents=True, exist_ok=True)
    cc = os.environ.get("CC", "cc")
    cmd = [cc, "-O2", "-Wall", "-shared", "-fPIC", f"-I{include}", f"-I{include / 'linux'}", "-o", str(lib) + ".tmp",
           str(SOURCE)]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    except FileNotFoundError:
        raise EmbeddedHadoopError(f"C compiler {cc!r} not found: the secure NodeManager's libhadoop.so is "
                                  "built from embedded_hadoop/native/hadoop_posix.c (apt-get install gcc, or set CC)"
                                  ) from None
    if proc.returncode != 0:
        raise EmbeddedHadoopError(f"building {lib} failed ({' '.join(cmd)}):\n{proc.stderr[-2000:]}")
    os.replace(str(lib) + ".tmp", lib)
    stamp.write_text(digest)
    return out_dir
