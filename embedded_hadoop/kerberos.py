"""The embedded cluster's Kerberos realm: an MIT KDC (Debian's krb5-kdc) in the state folder, its principals and
keytabs, and the TLS keystore that a DataNode needs to speak SASL without privileged ports.

Why MIT rather than Hadoop's MiniKdc: production realms are MIT or Active Directory, not Apache Kerby; kadmin
gives each service and user a keytab of its own (MiniKdc's command line writes every principal into one file, so
the second user would hold the services' keys); the KDC is up in milliseconds instead of a JVM's seconds; and
`kinit`/`klist` (krb5-user, needed by users anyway) come from the same packages.

Standard library only, like cluster.py. Nothing here is used by tfoy's library code.
"""

from __future__ import annotations

import getpass
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

if __package__:
    from embedded_hadoop.errors import EmbeddedHadoopError
else:  # imported by cluster.py run as a script
    from errors import EmbeddedHadoopError

REALM = "TFOY.TEST"
HOST = "localhost"
# service principals (name/host) and the daemon keytab each goes into; HTTP (SPNEGO) is shared by the web servers
SERVICES = {"nn": "nn", "dn": "dn", "rm": "rm", "nm": "nm", "HTTP": "http"}
OTHER_USER = "tfoy-other"  # a second user, for access-control tests
STORE_PASSWORD = "tfoy-embedded"  # of the self-signed keystore: a test fixture, not a secret
TOOLS = ("kdb5_util", "kadmin.local", "krb5kdc", "kinit")


@dataclass(frozen=True)
class Lifetimes:
    """Short lifetimes let tests outlive a ticket and a token renewal interval."""

    ticket: str = "24h"  # the KDC's max_life (kinit asks for at most this)
    renewable: str = "7d"
    token_renew_ms: int = 86_400_000  # HDFS and YARN delegation tokens: renew interval
    token_max_ms: int = 604_800_000  # and the longest a token lives, renewed or not

    @classmethod
    def from_env(cls) -> Lifetimes:
        env = os.environ
        return cls(ticket=env.get("TFOY_KRB_TICKET_LIFETIME", cls.ticket),
                   renewable=env.get("TFOY_KRB_RENEWABLE_LIFETIME", cls.renewable),
                   token_renew_ms=int(float(env.get("TFOY_TOKEN_RENEW_INTERVAL_S", cls.token_renew_ms / 1000)) * 1000),
                   token_max_ms=int(float(env.get("TFOY_TOKEN_MAX_LIFETIME_S", cls.token_max_ms / 1000)) * 1000))


def principal(name: str) -> str:
    return f"{name}@{REALM}"


def service_principal(service: str) -> str:
    return principal(f"{service}/{HOST}")


class Realm:
    """The KDC's files under `<state>/kerberos`, the keytabs under `<state>/keytabs`."""

    def __init__(self, state: Path, kdc_port: int, lifetimes: Lifetimes) -> None:
        self.dir = state / "kerberos"
        self.keytabs = state / "keytabs"
        self.kdc_port = kdc_port
        self.lifetimes = lifetimes
        self.krb5_conf = self.dir / "krb5.conf"
        self.kdc_conf = self.dir / "kdc.conf"
        self.database = self.dir / "db" / "principal"
        self.users = (getpass.getuser(), OTHER_USER)

    @property
    def env(self) -> dict[str, str]:
        """What every Kerberos tool and JVM of this realm needs in its environment."""
        return {"KRB5_CONFIG": str(self.krb5_conf), "KRB5_KDC_PROFILE": str(self.kdc_conf)}

    def keytab(self, name: str) -> Path:
        """The keytab of a daemon (nn, dn, rm, nm, http) or of a user."""
        return self.keytabs / f"{name}.keytab"

    def check_tools(self) -> None:
        missing = [t for t in TOOLS if not shutil.which(t) and not Path("/usr/sbin", t).exists()]
        if missing:
            raise EmbeddedHadoopError(f"secure mode needs MIT Kerberos ({', '.join(missing)} not found): "
                                      "apt-get install krb5-kdc krb5-admin-server krb5-user (./build.sh setup does)")

    def write_conf(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        self.keytabs.mkdir(mode=0o700, exist_ok=True)
        kdc = f"127.0.0.1:{self.kdc_port}"
        # TCP only (udp_preference_limit = 1): Hadoop's tickets with PACs outgrow a datagram
        self.krb5_conf.write_text(f"""[libdefaults]
  default_realm = {REALM}
  dns_lookup_realm = false
  dns_lookup_kdc = false
  rdns = false
  udp_preference_limit = 1
  ticket_lifetime = {self.lifetimes.ticket}
  renew_lifetime = {self.lifetimes.renewable}
  forwardable = true
[realms]
  {REALM} = {{
    kdc = {kdc}
  }}
[domain_realm]
  {HOST} = {REALM}
""")
        self.kdc_conf.write_text(f"""[kdcdefaults]
  kdc_listen = {kdc}
  kdc_tcp_listen = {kdc}
[realms]
  {REALM} = {{
    database_name = {self.database}
    key_stash_file = {self.dir / 'db' / 'stash'}
    acl_file = {self.dir / 'kadm5.acl'}
    max_life = {self.lifetimes.ticket}
    max_renewable_life = {self.lifetimes.renewable}
    supported_enctypes = aes256-cts-hmac-sha1-96:normal aes128-cts-hmac-sha1-96:normal
  }}
[logging]
  kdc = FILE:{self.dir / 'kdc.log'}
""")

    def _run(self, *cmd: str) -> str:
        proc = subprocess.run(cmd, capture_output=True, text=True, env=dict(os.environ, **self.env), timeout=60)
        if proc.returncode != 0:
            raise EmbeddedHadoopError(f"{' '.join(cmd[:3])}… failed (exit {proc.returncode}): {proc.stderr.strip()}")
        return proc.stdout

    def kadmin(self, query: str) -> str:
        return self._run("kadmin.local", "-q", query)

    def create_if_new(self) -> None:
        """The realm's database, every principal and every keytab (once: keys stay valid across restarts)."""
        self.check_tools()
        self.write_conf()
        if not self.database.exists():
            (self.dir / "db").mkdir(exist_ok=True)
            self._run("kdb5_util", "create", "-s", "-r", REALM, "-P", os.urandom(16).hex(), "-W")
        existing = set(self.kadmin("listprincs").split())
        wanted = [f"{s}/{HOST}" for s in SERVICES] + list(self.users)
        for name in wanted:
            if principal(name) not in existing:
                self.kadmin(f"addprinc -randkey {name}")
            # the lifetimes asked for now (kinit is capped by the principal's, the realm's and krbtgt's)
            self.kadmin(f"modprinc -maxlife {self.lifetimes.ticket} -maxrenewlife {self.lifetimes.renewable} {name}")
        self.kadmin(f"modprinc -maxlife {self.lifetimes.ticket} -maxrenewlife {self.lifetimes.renewable} "
                    f"krbtgt/{REALM}")
        for service, keytab in SERVICES.items():
            self._keytab(self.keytab(keytab), f"{service}/{HOST}")
        for daemon in ("nn", "dn", "rm", "nm"):  # each web server also answers SPNEGO as HTTP/host
            self._keytab(self.keytab(daemon), f"HTTP/{HOST}")
        for user in self.users:
            self._keytab(self.keytab(user), user)
        self.write_http_secret()

    def _keytab(self, path: Path, name: str) -> None:
        if path.exists() and name in self._run("klist", "-k", str(path)):
            return
        # -norandkey: the same key in every keytab that holds this principal (a new key would void the others)
        self.kadmin(f"ktadd -norandkey -k {path} {name}")
        path.chmod(0o600)

    def write_http_secret(self) -> None:
        secret = self.dir / "http-signature-secret"
        if not secret.exists():
            secret.write_text(os.urandom(32).hex())
            secret.chmod(0o600)

    def kdc_command(self, pid_file: Path) -> list[str]:
        return [shutil.which("krb5kdc") or "/usr/sbin/krb5kdc", "-n", "-P", str(pid_file)]

    def kinit(self, user: str, ccache: Path) -> None:
        """A ticket for a user from its keytab, into `ccache` (what `kinit -kt` does for a person)."""
        self._run("kinit", "-kt", str(self.keytab(user)), "-c", f"FILE:{ccache}", principal(user))


def make_keystore(conf: Path, java_home: str | None) -> None:
    """A self-signed certificate for localhost (keystore and truststore) and Hadoop's ssl-server/ssl-client files:
    HTTPS_ONLY is what lets a DataNode use SASL on an unprivileged port (no root, no jsvc)."""
    keystore, truststore = conf / "keystore.jks", conf / "truststore.jks"
    keytool = str(Path(java_home) / "bin" / "keytool") if java_home else (shutil.which("keytool") or "keytool")
    if not keystore.exists():
        run = dict(capture_output=True, text=True, timeout=120, check=True)
        subprocess.run([keytool, "-genkeypair", "-alias", HOST, "-keyalg", "RSA", "-keysize", "2048",
                        "-dname", f"CN={HOST}", "-ext", f"SAN=dns:{HOST},ip:127.0.0.1", "-validity", "3650",
                        "-keystore", str(keystore), "-storepass", STORE_PASSWORD, "-keypass", STORE_PASSWORD,
                        "-storetype", "JKS"], **run)
        cert = conf / "localhost.crt"
        subprocess.run([keytool, "-exportcert", "-alias", HOST, "-keystore", str(keystore), "-storepass",
                        STORE_PASSWORD, "-rfc", "-file", str(cert)], **run)
        truststore.unlink(missing_ok=True)
        subprocess.run([keytool, "-importcert", "-noprompt", "-alias", HOST, "-file", str(cert), "-keystore",
                        str(truststore), "-storepass", STORE_PASSWORD, "-storetype", "JKS"], **run)

    def site(props: dict[str, str]) -> str:
        return f'<?xml version="1.0"?>\n<configuration>\n{properties_xml(props)}\n</configuration>\n'

    (conf / "ssl-server.xml").write_text(site({
        "ssl.server.keystore.location": str(keystore), "ssl.server.keystore.password": STORE_PASSWORD,
        "ssl.server.keystore.keypassword": STORE_PASSWORD, "ssl.server.keystore.type": "jks",
        "ssl.server.truststore.location": str(truststore), "ssl.server.truststore.password": STORE_PASSWORD,
        "ssl.server.truststore.type": "jks"}))
    (conf / "ssl-client.xml").write_text(site({
        "ssl.client.truststore.location": str(truststore), "ssl.client.truststore.password": STORE_PASSWORD,
        "ssl.client.truststore.type": "jks"}))


PROTECTIONS = ("authentication", "integrity", "privacy")


def site_properties(realm: Realm, conf: Path, user: str, ports: dict[str, int]) -> dict[str, dict[str, str]]:
    """The Kerberos additions to core-, hdfs- and yarn-site, by file. RPC and data transfer protection come from
    TFOY_RPC_PROTECTION / TFOY_DATA_PROTECTION (authentication | integrity | privacy; default authentication)."""
    rpc = os.environ.get("TFOY_RPC_PROTECTION", "authentication")
    data = os.environ.get("TFOY_DATA_PROTECTION", "authentication")
    for key, value in (("TFOY_RPC_PROTECTION", rpc), ("TFOY_DATA_PROTECTION", data)):
        if value not in PROTECTIONS:
            raise EmbeddedHadoopError(f"{key}={value!r}: one of {', '.join(PROTECTIONS)}")
    kt = realm.keytab
    life = realm.lifetimes
    return {
        "core": {
            "hadoop.security.authentication": "kerberos",
            "hadoop.security.authorization": "true",
            "hadoop.rpc.protection": rpc,
            # the daemons' principals are the user who runs the cluster (its HDFS superuser), as in plain mode;
            # users' principals map to their short names
            "hadoop.security.auth_to_local": "\n".join(
                [f"RULE:[2:$1@$0]({s}@{REALM})s/.*/{user}/" for s in SERVICES] + ["DEFAULT"]),
        },
        "hdfs": {
            "dfs.block.access.token.enable": "true",
            "dfs.namenode.kerberos.principal": service_principal("nn"),
            "dfs.namenode.keytab.file": str(kt("nn")),
            "dfs.namenode.kerberos.internal.spnego.principal": service_principal("HTTP"),
            "dfs.datanode.kerberos.principal": service_principal("dn"),
            "dfs.datanode.keytab.file": str(kt("dn")),
            "dfs.web.authentication.kerberos.principal": service_principal("HTTP"),
            "dfs.web.authentication.kerberos.keytab": str(kt("http")),
            # SPNEGO on the HDFS web servers (WebHDFS, JMX): here, not in core-site, so the YARN web servers (the
            # RM's REST API, the tracking pages) keep simple authentication
            "hadoop.http.authentication.type": "kerberos",
            "hadoop.http.authentication.kerberos.principal": service_principal("HTTP"),
            "hadoop.http.authentication.kerberos.keytab": str(kt("http")),
            "hadoop.http.authentication.signature.secret.file": str(realm.dir / "http-signature-secret"),
            "dfs.data.transfer.protection": data,
            "dfs.http.policy": "HTTPS_ONLY",
            "dfs.namenode.https-address": f"localhost:{ports['NN_HTTPS_PORT']}",
            "dfs.datanode.https.address": f"127.0.0.1:{ports['DN_HTTPS_PORT']}",
            "dfs.namenode.delegation.token.renew-interval": str(life.token_renew_ms),
            "dfs.namenode.delegation.token.max-lifetime": str(life.token_max_ms),
        },
        "yarn": {
            "yarn.resourcemanager.principal": service_principal("rm"),
            "yarn.resourcemanager.keytab": str(kt("rm")),
            "yarn.nodemanager.principal": service_principal("nm"),
            "yarn.nodemanager.keytab": str(kt("nm")),
            "yarn.resourcemanager.delegation.token.renew-interval": str(life.token_renew_ms),
            "yarn.resourcemanager.delegation.token.max-lifetime": str(life.token_max_ms),
            # application ACLs: an application is seen and changed by its owner and the admins only
            "yarn.acl.enable": "true",
            "yarn.admin.acl": user,
            # container logs: a secure NodeManager reads them through SecureIOUtils, which needs libhadoop.so
            # (native_shim builds the part it uses); aggregated to HDFS as on the plain cluster
        },
    }


def properties_xml(props: dict[str, str]) -> str:
    return "\n".join(f"  <property><name>{k}</name><value>{v}</value></property>" for k, v in props.items())
