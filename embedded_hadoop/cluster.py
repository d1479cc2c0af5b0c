"""Lifecycle of the embedded pseudo-distributed Hadoop cluster (NameNode, DataNode, ResourceManager,
NodeManager), each its own JVM, built from Maven-resolved jars.

This is a development and test stand-in for a real cluster: nothing in tfoy's library code knows about it.
It only writes site files into a state folder and exports HADOOP_CONF_DIR, exactly as a real edge node would
have. Standard library only, so that it runs before the project's venv exists.

With --secure (a state folder of its own), a Kerberos realm comes first (embedded_hadoop/kerberos.py: an MIT KDC,
principals and keytabs) and every daemon runs with Kerberos authentication, block access tokens, SASL data transfer
protection and HTTPS; a secure state folder stays secure (`secure.json` in it).

Usage: python3 cluster.py {start|stop|status|conf} [--secure] [--json]
Environment: TFOY_HADOOP_LIB (jar folder, required), TFOY_HADOOP_STATE (default ~/.tfoy/hadoop),
JAVA_HOME, TFOY_START_TIMEOUT (seconds, default 180), TFOY_HADOOP_PORT_OFFSET (added to every port; a secure
cluster's default is 100, so it can run beside a plain one), and for secure mode TFOY_RPC_PROTECTION,
TFOY_DATA_PROTECTION, TFOY_KRB_TICKET_LIFETIME, TFOY_TOKEN_RENEW_INTERVAL_S (see kerberos.py).
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

if __package__:
    from embedded_hadoop import kerberos, native_shim
    from embedded_hadoop.daemons import DAEMONS, JAVA17_OPENS, PORTS, SECURE_PORT_OFFSET, SIZING, Daemon
    from embedded_hadoop.errors import EmbeddedHadoopError
    from embedded_hadoop.web import DaemonWeb
else:  # run as a script (before any venv exists): the sibling modules
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import kerberos
    import native_shim
    from daemons import DAEMONS, JAVA17_OPENS, PORTS, SECURE_PORT_OFFSET, SIZING, Daemon
    from errors import EmbeddedHadoopError
    from web import DaemonWeb

HERE = Path(__file__).resolve().parent
TEMPLATES = HERE.parent / "conf" / "hadoop"

EMPTY_WEB_XML = """<?xml version="1.0" encoding="UTF-8"?>
<web-app xmlns="http://xmlns.jcp.org/xml/ns/javaee" version="3.1"/>
"""


class Cluster:
    def __init__(self, state: Path, lib: Path, java_home: str | None, timeout: float, secure: bool = False,
                 port_offset: int = 0) -> None:
        self.state = state
        self.lib = lib
        self.java_home = java_home
        self.java = str(Path(java_home) / "bin" / "java") if java_home else "java"
        self.timeout = timeout
        self.conf = state / "conf"
        self.logs = state / "logs"
        self.pids = state / "pids"
        self.started: dict[str, subprocess.Popen] = {}
        # a real Hadoop (or a second embedded cluster) on the same host is avoided by shifting every port
        self.ports = {key: port + port_offset for key, port in PORTS.items()}
        self.secure = secure
        self.port_offset = port_offset
        self.realm = (kerberos.Realm(state, self.ports["KDC_PORT"], kerberos.Lifetimes.from_env())
                      if secure else None)
        self.web = DaemonWeb(self.ports, self.realm)
        self.native_lib: Path | None = None  # libhadoop.so's folder, for the secure NodeManager (native_shim)

    # ---- configuration -------------------------------------------------------------------------------
    def write_conf(self) -> None:
        for d in (self.conf, self.logs, self.pids, self.state / "tmp", self.state / "nm-local", self.state / "nm-logs",
                  self.state / "nm-recovery"):
            d.mkdir(parents=True, exist_ok=True)
        values = {**{k: str(v) for k, v in self.ports.items()}, **{k: str(v) for k, v in SIZING.items()}}
        values.update(STATE=str(self.state), HADOOP_CONF_DIR=str(self.conf), HADOOP_LIB=str(self.lib),
                      USER=getpass.getuser(), SECURE_CORE="", SECURE_HDFS="", SECURE_YARN="")
        if self.realm:
            self.realm.create_if_new()
            kerberos.make_keystore(self.conf, self.java_home)
            self.native_lib = native_shim.build(self.state, self.java_home)
            for part, props in kerberos.site_properties(self.realm, self.conf, getpass.getuser(), self.ports).items():
                values[f"SECURE_{part.upper()}"] = kerberos.properties_xml(props)
            (self.state / "secure.json").write_text(json.dumps({"secure": True, "port_offset": self.port_offset}))
        for template in sorted(TEMPLATES.glob("*.in")):
            text = template.read_text()
            for key, value in values.items():
                text = text.replace(f"@{key}@", value)
            leftover = re.search(r"@[A-Z_]+@", text)
            if leftover:
                raise EmbeddedHadoopError(f"{template}: no value for placeholder {leftover.group()}")
            (self.conf / template.name[: -len(".in")]).write_text(text)
        # HDFS's HTTP servers look up webapps/<name> on the classpath; Maven's hadoop-hdfs jar leaves them out
        # (the tarball ships them as folders). JMX and WebHDFS need only an empty web.xml.
        for app in ("hdfs", "datanode", "secondary", "journal"):
            web_inf = self.conf / "webapps" / app / "WEB-INF"
            web_inf.mkdir(parents=True, exist_ok=True)
            (web_inf / "web.xml").write_text(EMPTY_WEB_XML)

    # ---- processes -----------------------------------------------------------------------------------
    def pid_of(self, daemon: Daemon) -> int | None:
        """The pid in the daemon's pid file, if that process is alive and really is this daemon."""
        pid_file = self.pids / f"{daemon.name}.pid"
        try:
            pid = int(pid_file.read_text().strip())
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except (OSError, ValueError):
            return None
        if daemon.main.encode() not in cmdline:
            return None  # the pid was recycled by another process
        return pid

    def java_cmd(self, daemon: Daemon) -> list[str]:
        return [
            self.java,
            f"-Xmx{daemon.heap_mb}m",
            "-XX:+UseSerialGC",
            "-XX:TieredStopAtLevel=1",
            f"-Djava.io.tmpdir={self.state / 'tmp'}",
            f"-Dhadoop.log.dir={self.logs}",
            f"-Dhadoop.log.file={daemon.name}.log",
            f"-Dyarn.log.dir={self.logs}",
            f"-Dyarn.log.file={daemon.name}.log",
            "-Dhadoop.root.logger=INFO,RFA",
            *([f"-Djava.security.krb5.conf={self.realm.krb5_conf}"] if self.realm else []),
            *([f"-Djava.library.path={self.native_lib}"] if self.native_lib and daemon.name == "nodemanager" else []),
            f"-Dlog4j.configuration=file:{self.conf / 'log4j.properties'}",
            *JAVA17_OPENS,
            "-cp",
            f"{self.conf}:{self.lib}/*",
            daemon.main,
        ]

    def launch(self, daemon: Daemon, extra: list[str] | None = None) -> subprocess.Popen:
        out = open(self.logs / f"{daemon.name}.out", "ab")
        env = dict(os.environ, HADOOP_CONF_DIR=str(self.conf))
        proc = subprocess.Popen(
            self.java_cmd(daemon) + (extra or []),
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            start_new_session=True,
            cwd=self.state,
        )
        out.close()
        return proc

    def log_tail(self, daemon: Daemon, lines: int = 25) -> str:
        parts = []
        for suffix in (".log", ".out"):
            path = self.logs / f"{daemon.name}{suffix}"
            if path.exists():
                tail = path.read_text(errors="replace").splitlines()[-lines:]
                parts.append(f"--- last lines of {path} ---\n" + "\n".join(tail))
        return "\n".join(parts) or f"(no log written under {self.logs})"

    # ---- start ---------------------------------------------------------------------------------------
    def format_namenode_if_new(self) -> None:
        if (self.state / "data" / "namenode" / "current" / "VERSION").exists():
            return
        namenode = DAEMONS[0]
        print("formatting a new NameNode in", self.state / "data" / "namenode", flush=True)
        proc = self.launch(namenode, ["-format", "-nonInteractive", "-clusterid", "tfoy-embedded"])
        try:
            code = proc.wait(timeout=self.timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise EmbeddedHadoopError(
                f"NameNode format did not finish within {self.timeout:.0f}s\n{self.log_tail(namenode)}"
            ) from None
        if code != 0:
            raise EmbeddedHadoopError(f"NameNode format failed (exit {code})\n{self.log_tail(namenode)}")

    def check_ports_free(self, daemon: Daemon) -> None:
        for key in daemon.ports:
            port = self.ports[key]
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                try:
                    s.bind(("127.0.0.1", port))
                except OSError:
                    raise EmbeddedHadoopError(
                        f"port {port} ({daemon.name} {key}) is already in use; stop whatever listens on it "
                        f"(ss -ltnp 'sport = :{port}') or set TFOY_HADOOP_PORT_OFFSET"
                    ) from None

    def start(self) -> None:
        t0 = time.monotonic()
        self.write_conf()
        running = {d.name: self.pid_of(d) for d in DAEMONS}
        if all(running.values()):
            print("embedded Hadoop is already running:", ", ".join(f"{n} pid {p}" for n, p in running.items()))
            self.wait_ready(t0)
            return
        for daemon in DAEMONS:
            if not running[daemon.name]:
                self.check_ports_free(daemon)
        try:
            if self.realm:
                self.start_kdc()  # first: formatting logs in too
            self.format_namenode_if_new()
            for daemon in DAEMONS:
                if running[daemon.name]:
                    continue
                for suffix in (".log", ".out"):  # keep one previous run's logs, so the tail shown is this run's
                    log = self.logs / f"{daemon.name}{suffix}"
                    if log.exists():
                        log.replace(log.with_name(log.name + ".previous"))
                proc = self.launch(daemon)
                self.started[daemon.name] = proc
                (self.pids / f"{daemon.name}.pid").write_text(str(proc.pid))
                print(f"started {daemon.name} (pid {proc.pid}, log {self.logs / daemon.name}.log)", flush=True)
            self.wait_ready(t0)
            self.web.prepare_hdfs()
        except BaseException:
            self.stop()  # a half-started cluster would only confuse the next start
            raise
        print(f"embedded Hadoop is up in {time.monotonic() - t0:.1f}s; HADOOP_CONF_DIR={self.conf}", flush=True)

    def kdc_pid(self) -> int | None:
        try:
            pid = int((self.pids / "kdc.pid").read_text().strip())
            return pid if b"krb5kdc" in Path(f"/proc/{pid}/cmdline").read_bytes() else None
        except (OSError, ValueError):
            return None

    def start_kdc(self) -> None:
        """The realm's KDC (first: every daemon logs in from its keytab as it starts)."""
        assert self.realm is not None
        if self.kdc_pid():
            return
        pid_file = self.pids / "kdc.pid"
        pid_file.unlink(missing_ok=True)
        out = open(self.logs / "kdc.out", "ab")
        proc = subprocess.Popen(self.realm.kdc_command(pid_file), stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, env=dict(os.environ, **self.realm.env),
                                start_new_session=True, cwd=self.state)
        out.close()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise EmbeddedHadoopError(f"the KDC exited with code {proc.returncode}; see "
                                          f"{self.logs / 'kdc.out'} and {self.realm.dir / 'kdc.log'}")
            with socket.socket() as s:
                s.settimeout(1)
                if s.connect_ex(("127.0.0.1", self.realm.kdc_port)) == 0:
                    pid_file.write_text(str(proc.pid))
                    print(f"started kdc (pid {proc.pid}, realm {kerberos.REALM}, 127.0.0.1:{self.realm.kdc_port})",
                          flush=True)
                    return
            time.sleep(0.1)
        proc.kill()
        raise EmbeddedHadoopError(f"the KDC did not listen on 127.0.0.1:{self.realm.kdc_port} within 30s")

    def assert_alive(self) -> None:
        for daemon in DAEMONS:
            proc = self.started.get(daemon.name)
            # The JVM launcher may re-exec itself, so /proc/<pid>/cmdline is briefly not Java's: poll our child.
            if (proc.poll() is not None) if proc else not self.pid_of(daemon):
                raise EmbeddedHadoopError(f"{daemon.name} died during start-up\n{self.log_tail(daemon)}")

    def wait_ready(self, t0: float) -> None:
        """Returns when HDFS has left safe mode with a live DataNode and a NodeManager has registered."""
        checks = [
            ("HDFS out of safe mode with 1 live DataNode", self.web.hdfs_ready, DAEMONS[0]),
            ("NodeManager registered with the ResourceManager", self.web.yarn_ready, DAEMONS[3]),
        ]
        for what, check, daemon in checks:
            while True:
                self.assert_alive()
                try:
                    if check():
                        break
                except (OSError, urllib.error.URLError, ValueError, LookupError):
                    pass  # web UI not up yet
                if time.monotonic() - t0 > self.timeout:
                    raise EmbeddedHadoopError(
                        f"timed out after {self.timeout:.0f}s waiting for: {what}\n{self.log_tail(daemon)}"
                    )
                time.sleep(0.5)

    # ---- stop / status -------------------------------------------------------------------------------
    def stop(self) -> None:
        stopped = []
        for daemon in reversed(DAEMONS):
            pid = self.pid_of(daemon)
            (self.pids / f"{daemon.name}.pid").unlink(missing_ok=True)
            if not pid:
                continue
            os.kill(pid, signal.SIGTERM)
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and Path(f"/proc/{pid}").exists():
                if _is_zombie(pid):
                    break
                time.sleep(0.2)
            else:
                if Path(f"/proc/{pid}").exists():
                    os.kill(pid, signal.SIGKILL)
            stopped.append(f"{daemon.name} (pid {pid})")
        kdc = self.kdc_pid()
        if kdc:
            os.kill(kdc, signal.SIGTERM)
            stopped.append(f"kdc (pid {kdc})")
        (self.pids / "kdc.pid").unlink(missing_ok=True)
        print("stopped " + ", ".join(stopped) if stopped else "embedded Hadoop is not running; nothing to stop")

    def status(self) -> dict:
        daemons = {}
        for daemon in DAEMONS:
            pid = self.pid_of(daemon)
            daemons[daemon.name] = {"pid": pid, "rss_mb": _rss_mb(pid) if pid else None}
        if self.secure:
            pid = self.kdc_pid()
            daemons["kdc"] = {"pid": pid, "rss_mb": _rss_mb(pid) if pid else None}
        info = {"secure": self.secure, "state": str(self.state), "conf": str(self.conf), "daemons": daemons}
        try:
            info["hdfs_ready"] = self.web.hdfs_ready()
            info["yarn_ready"] = self.web.yarn_ready()
        except (OSError, urllib.error.URLError, ValueError, LookupError):
            info["hdfs_ready"] = info["yarn_ready"] = False
        return info


def _is_zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] == "Z"
    except OSError:
        return True


def _rss_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        return None
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=["start", "stop", "status", "conf"])
    parser.add_argument("--json", action="store_true", help="status as JSON")
    parser.add_argument("--secure", action="store_true", help="Kerberos, SASL data transfer and HTTPS (see above)")
    args = parser.parse_args(argv)
    lib = os.environ.get("TFOY_HADOOP_LIB")
    if not lib or not any(Path(lib).glob("hadoop-common-*.jar")):
        print(f"error: TFOY_HADOOP_LIB={lib!r} holds no Hadoop jars; run ./build.sh setup", file=sys.stderr)
        return 2
    state = Path(os.environ.get("TFOY_HADOOP_STATE", Path.home() / ".tfoy" / "hadoop"))
    marker = state / "secure.json"
    secure = args.secure or marker.exists()
    if args.secure and not marker.exists() and (state / "data").exists():
        print(f"error: {state} holds a plain cluster; a secure one needs a state folder of its own "
              "(TFOY_HADOOP_STATE; ./build.sh hadoop start --secure uses ~/.tfoy/hadoop-secure)", file=sys.stderr)
        return 2
    offset = int(os.environ.get("TFOY_HADOOP_PORT_OFFSET", SECURE_PORT_OFFSET if secure else 0))
    cluster = Cluster(state, Path(lib), os.environ.get("JAVA_HOME"), float(os.environ.get("TFOY_START_TIMEOUT", 180)),
                      secure=secure, port_offset=offset)
    try:
        if args.command == "start":
            cluster.start()
        elif args.command == "stop":
            cluster.stop()
        elif args.command == "conf":
            cluster.write_conf()
            print(cluster.conf)
        else:
            info = cluster.status()
            if args.json:
                print(json.dumps(info, indent=2))
            else:
                for name, d in info["daemons"].items():
                    print(f"{name:16} " + (f"running pid {d['pid']} rss {d['rss_mb']} MB" if d["pid"] else "stopped"))
                print(f"hdfs ready: {info['hdfs_ready']}  yarn ready: {info['yarn_ready']}  conf: {info['conf']}")
            return 0 if all(d["pid"] for d in info["daemons"].values()) else 3
    except EmbeddedHadoopError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
