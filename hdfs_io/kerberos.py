"""Kerberos as a Hadoop client sees it: is the cluster Kerberized, who am I, and logging in from a keytab.

The HDFS clients (hdfs-native in Python, tfoy's Rust reader and TF filesystem) authenticate through the system's
GSSAPI library: with the ticket cache (KRB5CCNAME, or the default one `kinit` fills), or in a YARN container with
the delegation tokens in HADOOP_TOKEN_FILE_LOCATION. This module only finds and checks those credentials, with
MIT's `kinit`/`klist` (krb5-user) where they are installed, so that a missing ticket is named before anything
tries the cluster.
"""

from __future__ import annotations

import getpass
import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from hdfs_io.errors import HdfsIoError
from hdfs_io.paths import hadoop_conf_value

KINIT_TIMEOUT_S = 30.0  # a KDC that does not answer: kinit's own retries would take longer


class KerberosError(HdfsIoError, RuntimeError):
    """No usable credentials, or a KDC that refused or did not answer; the message says what to do."""


def enabled(conf_dir: str | None = None) -> bool:
    """hadoop.security.authentication=kerberos in HADOOP_CONF_DIR's core-site.xml."""
    return (hadoop_conf_value("hadoop.security.authentication", conf_dir=conf_dir) or "simple").lower() == "kerberos"


def in_container() -> bool:
    """A YARN container of a secure application authenticates with delegation tokens, not a ticket."""
    return bool(os.environ.get("HADOOP_TOKEN_FILE_LOCATION"))


def krb5_conf_path() -> Path:
    return Path(os.environ.get("KRB5_CONFIG", "/etc/krb5.conf").split(":")[0])


def default_realm() -> str | None:
    path = krb5_conf_path()
    if not path.exists():
        return None
    m = re.search(r"^\s*default_realm\s*=\s*(\S+)", path.read_text(errors="replace"), re.M)
    return m.group(1) if m else None


def kdc_addresses(realm: str | None = None) -> list[str]:
    """The `kdc =` entries of a realm in krb5.conf (for messages that name the KDC that did not answer)."""
    path = krb5_conf_path()
    realm = realm or default_realm()
    if not path.exists() or not realm:
        return []
    text = path.read_text(errors="replace")
    m = re.search(rf"^\s*{re.escape(realm)}\s*=\s*\{{(.*?)\}}", text, re.M | re.S)
    return re.findall(r"^\s*kdc\s*=\s*(\S+)", m.group(1), re.M) if m else []


def short_name(principal: str) -> str:
    """Hadoop's DEFAULT auth_to_local rule: `user@REALM` and `user/host@REALM` of the default realm → `user`."""
    return re.split(r"[/@]", principal, maxsplit=1)[0]


def cached_principal() -> str | None:
    """The principal of a valid (unexpired) ticket in the current cache, or None (also when klist is missing)."""
    klist = shutil.which("klist")
    if not klist:
        return None
    try:
        if subprocess.run([klist, "-s"], timeout=10).returncode != 0:
            return None
        out = subprocess.run([klist], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.TimeoutExpired):
        return None
    m = re.search(r"^Default principal:\s*(\S+)", out, re.M)
    return m.group(1) if m else None


def expected_principal() -> str:
    realm = default_realm()
    return f"{getpass.getuser()}@{realm}" if realm else getpass.getuser()


@dataclass
class Login:
    """Credentials for this process and its children: a ticket cache of its own when logged in from a keytab."""

    principal: str
    keytab: str | None = None
    ccache: Path | None = None
    previous_ccache: str | None = None

    def close(self) -> None:
        """Forgets the private ticket (the process's KRB5CCNAME is put back as it was)."""
        if self.ccache is None:
            return
        shutil.rmtree(self.ccache.parent, ignore_errors=True)
        if self.previous_ccache is None:
            os.environ.pop("KRB5CCNAME", None)
        else:
            os.environ["KRB5CCNAME"] = self.previous_ccache


def login(principal: str | None = None, keytab: str | None = None) -> Login:
    """Checks (or with a keytab, obtains) a ticket before anything talks to the cluster.

    With a keytab: `kinit -kt` into a private cache (KRB5CCNAME is set for this process, so the HDFS clients and
    skein's driver use it). Without: the existing ticket cache must hold a valid ticket (of `principal` if given).
    """
    if keytab:
        if not principal:
            raise KerberosError(f"--keytab {keytab}: give --principal too (the principal to log in as)")
        if not Path(keytab).is_file():
            raise KerberosError(f"keytab {keytab} does not exist")
        kinit = shutil.which("kinit")
        if not kinit:  # GSSAPI can log in from a client keytab by itself (MIT krb5 ≥ 1.11)
            os.environ["KRB5_CLIENT_KTNAME"] = keytab
            return Login(principal, keytab)
        folder = Path(tempfile.mkdtemp(prefix="tfoy-krb5cc-"))  # 0700: the ticket is a credential
        ccache = folder / "ccache"
        _kinit([kinit, "-kt", keytab, "-c", f"FILE:{ccache}", principal], principal, folder)
        previous = os.environ.get("KRB5CCNAME")
        os.environ["KRB5CCNAME"] = f"FILE:{ccache}"
        return Login(principal, keytab, ccache, previous)
    cached = cached_principal()
    want = principal or expected_principal()
    if cached is None and shutil.which("klist"):
        raise KerberosError(f"no valid Kerberos ticket (expected {want}): run `kinit {want}` or pass --keytab "
                            "and --principal (security.keytab / security.principal in the spec)")
    if principal and cached and cached != principal:
        raise KerberosError(f"the ticket cache holds {cached}, not {principal}: kinit {principal}, or pass --keytab")
    return Login(cached or want)


def _kinit(cmd: list[str], principal: str, folder: Path) -> None:
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=KINIT_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        shutil.rmtree(folder, ignore_errors=True)
        kdcs = ", ".join(kdc_addresses(principal.partition("@")[2] or None)) or f"see {krb5_conf_path()}"
        raise KerberosError(f"the KDC did not answer within {KINIT_TIMEOUT_S:.0f}s (kdc {kdcs})") from None
    if proc.returncode != 0:
        shutil.rmtree(folder, ignore_errors=True)
        detail = proc.stderr.strip().removeprefix("kinit: ")
        if "contact" in detail.lower():
            detail += f" (kdc {', '.join(kdc_addresses(principal.partition('@')[2] or None)) or '?'})"
        raise KerberosError(f"cannot log in as {principal} from keytab {cmd[2]}: {detail}")
