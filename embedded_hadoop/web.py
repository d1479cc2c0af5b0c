"""The embedded daemons' web endpoints: readiness from the NameNode's JMX and the ResourceManager's REST API, and
the WebHDFS calls that make the folders every Hadoop cluster has (before any HDFS client is installed).

Secure clusters serve these over HTTPS only and want SPNEGO, which the standard library cannot speak: curl does.
Standard library only, as cluster.py.
"""

from __future__ import annotations

import getpass
import json
import os
import subprocess
import time
import urllib.request
from typing import Any

if __package__:
    from embedded_hadoop.errors import EmbeddedHadoopError
else:  # run from cluster.py as a script: the sibling module
    from errors import EmbeddedHadoopError


class DaemonWeb:
    def __init__(self, ports: dict[str, int], realm: Any = None) -> None:
        self.ports = ports
        self.realm = realm  # a kerberos.Realm on a secure cluster
        self.secure = realm is not None

    @property
    def namenode_web(self) -> str:
        if self.secure:
            return f"https://localhost:{self.ports['NN_HTTPS_PORT']}"
        return f"http://127.0.0.1:{self.ports['NN_HTTP_PORT']}"

    def jmx(self, query: str) -> dict:
        if self.secure:
            return json.loads(self.spnego("GET", f"{self.namenode_web}/jmx?qry={query}"))["beans"][0]
        with urllib.request.urlopen(f"{self.namenode_web}/jmx?qry={query}", timeout=5) as resp:
            return json.load(resp)["beans"][0]

    def spnego(self, method: str, url: str) -> str:
        """An HTTPS request to a secure HDFS web server as the cluster's user, with SPNEGO (curl: the standard
        library has no GSSAPI); the certificate is the self-signed one kerberos.make_keystore made (-k)."""
        assert self.realm is not None
        ccache = self.realm.dir / "admin.ccache"
        if not ccache.exists() or time.time() - ccache.stat().st_mtime > 600:
            self.realm.kinit(getpass.getuser(), ccache)
        proc = subprocess.run(["curl", "-sS", "-k", "--negotiate", "-u", ":", "-X", method, "-w", "\n%{http_code}",
                               url], capture_output=True, text=True, timeout=30,
                              env=dict(os.environ, KRB5CCNAME=f"FILE:{ccache}", **self.realm.env))
        body, _, code = proc.stdout.rpartition("\n")
        if proc.returncode != 0 or not code.startswith("2"):
            raise OSError(f"{method} {url.split('?')[0]} (SPNEGO): HTTP {code} {proc.stderr.strip()} {body[:300]}")
        return body

    def hdfs_ready(self) -> bool:
        info = self.jmx("Hadoop:service=NameNode,name=FSNamesystemState")
        return info["FSState"] == "Operational" and info["NumLiveDataNodes"] >= 1 and self.safemode_off()

    def safemode_off(self) -> bool:
        info = self.jmx("Hadoop:service=NameNode,name=NameNodeInfo")
        return info["Safemode"] == ""

    def yarn_ready(self) -> bool:
        url = f"http://127.0.0.1:{self.ports['RM_HTTP_PORT']}/ws/v1/cluster/metrics"
        with urllib.request.urlopen(url, timeout=5) as resp:
            return json.load(resp)["clusterMetrics"]["activeNodes"] >= 1

    def webhdfs(self, method: str, path: str, op: str, **params: str) -> None:
        if self.secure:
            return self.webhdfs_spnego(method, path, op, **params)
        query = "&".join(
            [f"op={op}", "user.name=" + os.environ.get("USER", "root")] + [f"{k}={v}" for k, v in params.items()]
        )
        url = f"{self.namenode_web}/webhdfs/v1{path}?{query}"
        with urllib.request.urlopen(urllib.request.Request(url, method=method), timeout=10):
            pass

    def webhdfs_spnego(self, method: str, path: str, op: str, **params: str) -> None:
        query = "&".join([f"op={op}"] + [f"{k}={v}" for k, v in params.items()])
        try:
            self.spnego(method, f"{self.namenode_web}/webhdfs/v1{path}?{query}")
        except OSError as e:
            raise EmbeddedHadoopError(f"WebHDFS {op} {path}: {e}") from None

    def prepare_hdfs(self) -> None:
        """Folders every Hadoop cluster has: /tmp (sticky), the log-aggregation root and the user's home."""
        user = os.environ.get("USER", "root")
        for path, mode in (("/tmp", "1777"), ("/tmp/logs", "1777"), ("/user", "755"), (f"/user/{user}", "755")):
            self.webhdfs("PUT", path, "MKDIRS")
            self.webhdfs("PUT", path, "SETPERMISSION", permission=mode)
