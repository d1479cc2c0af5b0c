"""The job spec: YAML in, dataclasses out, every error naming the key that is wrong.

Round-trips like skein's model.py (`from_dict` / `to_dict` / `from_yaml` / `to_yaml`). CLI flags override the YAML
through `apply_overrides` (`name`, `queue`, `tags`, and any `dotted.key=value`). Checks that need the cluster
(queue, maximum allocation, HDFS paths) live in `yarn_app.cluster_checks`, not here, so a spec can be validated
offline.
"""

from __future__ import annotations

import ast
import importlib.util
import math
import re
import sys
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from tfnode.contract import ENV_PREFIX, ROLE_NAMES, TF_ROLES
from yarn_app.errors import TfoyError

STRATEGIES = ("auto", "multi_worker_mirrored", "parameter_server")
KERAS_VERSIONS = (2, 3)
MAX_TAG_LENGTH = 100  # YARN's (YarnConfiguration.APPLICATION_MAX_TAG_LENGTH): longer tags fail the submission
# set by tfoy's container launch (yarn_app/application.py) to find the shipped code, Python and native libraries
RESERVED_ENV = frozenset({"PYTHONPATH", "PYTHONHOME", "LD_LIBRARY_PATH"})
_MEM_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(?:i?b)?\s*$", re.I)
_MEM_UNITS = {"": 1, "k": 1 / 1024, "m": 1, "g": 1024, "t": 1024 * 1024}


class SpecError(TfoyError, ValueError):
    """A job spec problem; the message starts with the offending key."""


def parse_memory(value: Any, key: str) -> int:
    """MiB from an int (MiB) or a string like '2 GiB', '1536m', '2g'."""
    if isinstance(value, bool):
        raise SpecError(f"{key}: expected memory (MiB or e.g. '2 GiB'), got {value!r}")
    if isinstance(value, int):
        mib = value
    elif isinstance(value, str) and (m := _MEM_RE.match(value)):
        mib = int(float(m.group(1)) * _MEM_UNITS[m.group(2).lower()])
    else:
        raise SpecError(f"{key}: expected memory (MiB or e.g. '2 GiB'), got {value!r}")
    if mib <= 0:
        raise SpecError(f"{key}: must be positive, got {value!r}")
    return mib


def _check_type(value: Any, typ: type | tuple[type, ...], key: str) -> Any:
    if isinstance(value, bool) and bool not in (typ if isinstance(typ, tuple) else (typ,)):
        raise SpecError(f"{key}: expected {_type_name(typ)}, got {value!r}")
    if not isinstance(value, typ):
        raise SpecError(f"{key}: expected {_type_name(typ)}, got {type(value).__name__} {value!r}")
    return value


def _type_name(typ: type | tuple[type, ...]) -> str:
    return " or ".join(t.__name__ for t in (typ if isinstance(typ, tuple) else (typ,)))


def _check_keys(data: Any, allowed: set[str], where: str) -> dict:
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise SpecError(f"{where or 'job spec'}: expected a mapping, got {type(data).__name__} {data!r}")
    unknown = sorted(set(map(str, data)) - allowed)
    if unknown:
        prefix = f"{where}." if where else ""
        raise SpecError(f"{prefix}{unknown[0]}: unknown key (allowed: {', '.join(sorted(allowed))})")
    return data


def _nonneg_int(value: Any, key: str, minimum: int = 0) -> int:
    _check_type(value, int, key)
    if value < minimum:
        raise SpecError(f"{key}: must be >= {minimum}, got {value}")
    return value


@dataclass
class RoleSpec:
    instances: int = 1
    memory: int = 2048  # MiB
    vcores: int = 1
    gpus: int = 0
    node_label: str | None = None
    max_restarts: int = 0

    @classmethod
    def from_dict(cls, data: Any, where: str) -> RoleSpec:
        d = _check_keys(data, {f.name for f in fields(cls)}, where)
        role = cls()
        if "instances" in d:
            role.instances = _nonneg_int(d["instances"], f"{where}.instances")
        if "memory" in d:
            role.memory = parse_memory(d["memory"], f"{where}.memory")
        if "vcores" in d:
            role.vcores = _nonneg_int(d["vcores"], f"{where}.vcores", 1)
        if "gpus" in d:
            role.gpus = _nonneg_int(d["gpus"], f"{where}.gpus")
        if d.get("node_label") is not None:
            role.node_label = _check_type(d["node_label"], str, f"{where}.node_label")
        if "max_restarts" in d:
            role.max_restarts = _nonneg_int(d["max_restarts"], f"{where}.max_restarts")
        return role


@dataclass
class PythonEnvSpec:
    """How containers get Python: `archive: auto` packs this venv; a path uses a prebuilt archive; `python`
    uses an interpreter already installed on every node (no archive shipped).

    `shared` (only with `archive: auto`): the packed archive is world-readable on HDFS, by choice, so that every
    NodeManager may cache it PUBLIC across jobs (unpacked once per node). The default is private: readable by its
    owner only and localized with APPLICATION visibility (once per application and node)."""

    archive: str | None = "auto"
    python: str | None = None
    exclude: list[str] = field(default_factory=lambda: ["pyspark", "py4j"])
    shared: bool = False

    @classmethod
    def from_dict(cls, data: Any, where: str = "python_env") -> PythonEnvSpec:
        d = _check_keys(data, {f.name for f in fields(cls)}, where)
        env = cls()
        if "python" in d and d["python"] is not None:
            env.python = _check_type(d["python"], str, f"{where}.python")
            env.archive = None
        if "archive" in d:
            env.archive = None if d["archive"] in (None, "none") else _check_type(d["archive"], str, f"{where}.archive")
        if "exclude" in d:
            env.exclude = [_check_type(x, str, f"{where}.exclude[{i}]") for i, x in enumerate(d["exclude"] or [])]
        if "shared" in d:
            env.shared = _check_type(d["shared"], bool, f"{where}.shared")
        if env.archive is None and env.python is None:
            raise SpecError(f"{where}: give an archive ('auto' or a path) or the python installed on the nodes")
        if env.shared and env.archive != "auto":
            uses = f"archive: {env.archive}" if env.archive is not None else "python:"
            raise SpecError(f"{where}.shared: only for archive: auto (tfoy packs and caches that one), not with {uses}")
        return env


@dataclass
class TimeoutSpec:
    """Seconds. allocation: containers granted; barrier: every task registered; job: the whole application;
    progress: the stall watchdog (off by default): a task whose TF process reports no progress for this long (no
    model.fit batch, no ctx.report) is dumped (every thread's Python stack into its log) and failed."""

    allocation: float = 300
    barrier: float = 300
    job: float = 3600
    progress: float | None = None

    @classmethod
    def from_dict(cls, data: Any, where: str = "timeouts") -> TimeoutSpec:
        d = _check_keys(data, {f.name for f in fields(cls)}, where)
        t = cls()
        for f in fields(cls):
            if f.name in d and d[f.name] is None and f.default is None:  # an optional timeout, off
                continue
            if f.name in d:
                v = _check_type(d[f.name], (int, float), f"{where}.{f.name}")
                if not math.isfinite(v) or v <= 0:  # .nan or .inf would make the wait never fire
                    raise SpecError(f"{where}.{f.name}: must be a positive number of seconds, got {v}")
                setattr(t, f.name, float(v))
        return t


@dataclass
class SecuritySpec:
    """Kerberos and access: who submits (the ticket cache by default, or a principal's keytab), who else may see
    or change the application (YARN ACLs; the owner and the cluster's admins always may), which `env` values are
    secrets (never printed, never in a launch script: given to the tasks through the AM's key-value store)."""

    principal: str | None = None
    keytab: str | None = None
    view_acls: list[str] = field(default_factory=list)
    modify_acls: list[str] = field(default_factory=list)
    secret_env: list[str] = field(default_factory=list)

    @classmethod
    def from_dict(cls, data: Any, where: str = "security") -> SecuritySpec:
        d = _check_keys(data, {f.name for f in fields(cls)}, where)
        sec = cls()
        for key in ("principal", "keytab"):
            if d.get(key) is not None:
                setattr(sec, key, _check_type(d[key], str, f"{where}.{key}"))
        for key in ("view_acls", "modify_acls", "secret_env"):
            if key in d:
                items = _check_type(d[key] or [], list, f"{where}.{key}")
                setattr(sec, key, [_check_type(x, str, f"{where}.{key}[{i}]") for i, x in enumerate(items)])
        sec.validate(where)
        return sec

    def validate(self, where: str = "security") -> None:
        if self.keytab is not None and self.principal is None:
            raise SpecError(f"{where}.principal: a keytab needs the principal to log in as (e.g. you@REALM)")
        if self.principal is not None and not re.fullmatch(r"[^\s@/]+(/[^\s@/]+)?(@[^\s@]+)?", self.principal):
            raise SpecError(f"{where}.principal: not a Kerberos principal: {self.principal!r}")
        for key in ("view_acls", "modify_acls"):
            for i, name in enumerate(getattr(self, key)):
                if not re.fullmatch(r"[\w.-]+|\*", name):
                    raise SpecError(f"{where}.{key}[{i}]: not a user name: {name!r}")


@dataclass
class JobSpec:
    entry_point: str
    roles: dict[str, RoleSpec]
    name: str = "tfoy"
    queue: str = "default"
    tags: list[str] = field(default_factory=list)
    args: list[str] = field(default_factory=list)
    files: dict[str, str] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)
    python_env: PythonEnvSpec = field(default_factory=PythonEnvSpec)
    timeouts: TimeoutSpec = field(default_factory=TimeoutSpec)
    strategy: str = "auto"
    keras: int = 3  # 2: tf-keras (Keras 2) as tf.keras in every task (TF_USE_LEGACY_KERAS=1)
    model_dir: str | None = None
    export_dir: str | None = None
    log_dir: str | None = None
    inputs: list[str] = field(default_factory=list)  # HDFS paths that must exist before submission
    security: SecuritySpec = field(default_factory=SecuritySpec)
    history_dir: str = ".tfoy/history"  # where the client records each job's end (home-relative on the defaultFS)

    # ---- (de)serialisation -------------------------------------------------------------------------------
    @classmethod
    def from_dict(cls, data: Any) -> JobSpec:
        d = _check_keys(data, {f.name for f in fields(cls)}, "")
        if "entry_point" not in d:
            raise SpecError("entry_point: required (package.module:function or a script.py)")
        if "roles" not in d:
            raise SpecError("roles: required (at least roles.worker.instances >= 1)")
        roles_raw = _check_keys(d["roles"], set(ROLE_NAMES), "roles")
        roles = {name: RoleSpec.from_dict(r, f"roles.{name}") for name, r in roles_raw.items()}
        spec = cls(entry_point=_check_type(d["entry_point"], str, "entry_point"), roles=roles)
        for key in ("name", "queue", "strategy", "model_dir", "export_dir", "log_dir", "history_dir"):
            if d.get(key) is not None:
                setattr(spec, key, _check_type(d[key], str, key))
        for key in ("tags", "args", "inputs"):
            if key in d:
                items = _check_type(d[key] or [], list, key)
                setattr(spec, key, [str(_check_type(x, (str, int, float), f"{key}[{i}]")) for i, x in enumerate(items)])
        for key in ("files", "env"):
            if key in d:
                m = _check_keys(d[key], {str(k) for k in (d[key] or {})}, key)
                setattr(spec, key, {str(k): str(_check_type(v, (str, int, float), f"{key}.{k}")) for k, v in m.items()})
        if "keras" in d:
            spec.keras = _check_type(d["keras"], int, "keras")
        if "python_env" in d:
            spec.python_env = PythonEnvSpec.from_dict(d["python_env"])
        if "timeouts" in d:
            spec.timeouts = TimeoutSpec.from_dict(d["timeouts"])
        if "security" in d:
            spec.security = SecuritySpec.from_dict(d["security"])
        spec.validate()
        return spec

    def to_dict(self) -> dict:
        d = asdict(self)
        d["roles"] = {k: asdict(v) for k, v in self.roles.items()}
        return d

    @classmethod
    def from_yaml(cls, text: str) -> JobSpec:
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as e:
            raise SpecError(f"job spec: not valid YAML: {e}") from None
        return cls.from_dict(data)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    @classmethod
    def from_file(cls, path: str | Path) -> JobSpec:
        path = Path(path)
        if not path.exists():
            raise SpecError(f"job spec: {path} does not exist")
        spec = cls.from_yaml(path.read_text())
        spec.resolve_files(path.parent)
        return spec

    # ---- rules ------------------------------------------------------------------------------------------
    def validate(self) -> None:
        """Offline checks: roles make a TensorFlow cluster, strategy fits the roles, names are sane."""
        if self.keras not in KERAS_VERSIONS:
            raise SpecError(f"keras: 2 (tf-keras) or 3 (TF's default Keras), got {self.keras!r}")
        if self.strategy not in STRATEGIES:
            raise SpecError(f"strategy: one of {', '.join(STRATEGIES)}, got {self.strategy!r}")
        workers = self.roles.get("worker")
        if workers is None or workers.instances < 1:
            raise SpecError("roles.worker.instances: a job needs at least 1 worker (got 0)")
        for name in ("chief", "ps", "evaluator", "tensorboard"):
            role = self.roles.get(name)
            if role and name in ("chief", "evaluator", "tensorboard") and role.instances > 1:
                raise SpecError(f"roles.{name}.instances: at most 1, got {role.instances}")
        if self.effective_strategy == "parameter_server":
            if not self.has("ps"):
                raise SpecError("roles.ps: strategy parameter_server needs at least one ps task")
            if not self.has("chief"):
                raise SpecError("roles.chief: strategy parameter_server needs a chief (the coordinator)")
        elif self.has("ps"):
            raise SpecError(f"roles.ps: ps tasks need strategy parameter_server, not {self.strategy}")
        if self.has("tensorboard") and not self.log_dir:
            raise SpecError("log_dir: the tensorboard role serves log_dir, which is not set")
        if not re.fullmatch(r"[\w.-]+", self.queue):
            raise SpecError(f"queue: not a queue name: {self.queue!r}")
        for i, tag in enumerate(self.tags):
            if not tag or len(tag) > MAX_TAG_LENGTH:
                raise SpecError(f"tags[{i}]: YARN takes tags of 1 to {MAX_TAG_LENGTH} characters, got {len(tag)}")
        for i, key in enumerate(self.security.secret_env):
            if key not in self.env:
                raise SpecError(f"security.secret_env[{i}]: {key} is not a key of env")
        for key in self.env:
            if key in RESERVED_ENV or key.startswith(ENV_PREFIX):
                raise SpecError(f"env.{key}: set by tfoy in every container, and a job that changed it would not "
                                "start; ship code with files: and libraries with python_env:")
            if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key):
                raise SpecError(f"env.{key}: not an environment variable name")
        for name, role in self.roles.items():
            if role.node_label is not None and not re.fullmatch(r"[A-Za-z0-9][\w.-]{0,254}", role.node_label):
                raise SpecError(f"roles.{name}.node_label: not a YARN node label: {role.node_label!r}")

    def has(self, role: str) -> bool:
        return role in self.roles and self.roles[role].instances > 0

    @property
    def effective_strategy(self) -> str:
        if self.strategy != "auto":
            return self.strategy
        return "parameter_server" if self.has("ps") else "multi_worker_mirrored"

    @property
    def tf_roles(self) -> dict[str, int]:
        """{role: instances} of the TensorFlow tasks (tensorboard is scheduled but not in the cluster)."""
        return {r: s.instances for r, s in self.roles.items() if r in TF_ROLES and s.instances > 0}

    def resolve_files(self, base: Path) -> None:
        """Relative local file paths (files, script entry points) are relative to the spec's folder; local files
        must exist (those on HDFS are checked against the cluster before submission)."""
        for k, v in list(self.files.items()):
            if "://" not in v and not Path(v).is_absolute():
                self.files[k] = str((base / v).resolve())
            if "://" not in v and not Path(self.files[k]).exists():
                raise SpecError(f"files.{k}: {self.files[k]} does not exist")
        keytab = self.security.keytab
        if keytab is not None:
            if "://" in keytab:
                raise SpecError(f"security.keytab: a local file, not {keytab} (a keytab is read on the edge node)")
            self.security.keytab = str((base / keytab).resolve())
            if not Path(self.security.keytab).is_file():
                raise SpecError(f"security.keytab: {self.security.keytab} does not exist")
        if self.entry_point.endswith(".py") and not Path(self.entry_point).is_absolute():
            candidate = (base / self.entry_point).resolve()
            if candidate.exists() and Path(self.entry_point).name not in self.files:
                self.files[Path(self.entry_point).name] = str(candidate)
                self.entry_point = Path(self.entry_point).name

    # ---- entry point ------------------------------------------------------------------------------------
    def check_entry_point(self) -> None:
        """The entry point exists and compiles, without running it (importing user code may import TensorFlow).

        A `module:function` is looked up among the shipped files first, then on this Python's path.
        """
        ep = self.entry_point
        if ep.endswith(".py"):
            src = self._shipped(Path(ep).name) or (Path(ep) if Path(ep).exists() else None)
            if src is None:
                raise SpecError(f"entry_point: script {ep} not found (not in files, not on disk)")
            _compile(src, "entry_point")
            return
        if ":" not in ep:
            raise SpecError(f"entry_point: expected package.module:function or a .py script, got {ep!r}")
        module, func = ep.split(":", 1)
        src = self._shipped(module.replace(".", "/") + ".py")
        if src is None:
            try:
                found = importlib.util.find_spec(module)
            except (ImportError, ValueError) as e:
                raise SpecError(f"entry_point: module {module!r} does not import: {e}") from None
            if found is None or not found.origin or not found.origin.endswith(".py"):
                raise SpecError(f"entry_point: module {module!r} does not import (not in files, not in {sys.prefix})")
            src = Path(found.origin)
        tree = _compile(src, "entry_point")
        defined = {n.name for n in tree.body if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)}
        defined |= {t.id for n in tree.body if isinstance(n, ast.Assign) for t in n.targets if isinstance(t, ast.Name)}
        defined |= {a.asname or a.name for n in tree.body if isinstance(n, ast.ImportFrom) for a in n.names}
        if func not in defined:
            raise SpecError(f"entry_point: {module} ({src}) defines no function {func!r}")

    def _shipped(self, relpath: str) -> Path | None:
        for name, source in self.files.items():
            p = Path(source)
            if name == relpath and p.is_file():
                return p
            if p.is_dir() and relpath.startswith(name.rstrip("/") + "/"):
                cand = p / relpath[len(name.rstrip("/")) + 1 :]
                if cand.is_file():
                    return cand
        return None


def _compile(path: Path, key: str) -> ast.Module:
    try:
        return ast.parse(path.read_text(), filename=str(path))
    except SyntaxError as e:
        raise SpecError(f"{key}: {path} does not import: SyntaxError line {e.lineno}: {e.msg}") from None


def apply_overrides(data: dict, name: str | None = None, queue: str | None = None, tags: list[str] | None = None,
                    sets: list[str] | None = None) -> dict:
    """CLI flags over the YAML mapping (before validation): `--set roles.worker.instances=3` parses YAML values."""
    data = dict(data or {})
    if name:
        data["name"] = name
    if queue:
        data["queue"] = queue
    if tags:
        data["tags"] = list(tags)
    for item in sets or []:
        if "=" not in item:
            raise SpecError(f"--set {item}: expected dotted.key=value")
        key, raw = item.split("=", 1)
        node = data
        parts = key.strip().split(".")
        for p in parts[:-1]:
            node = node.setdefault(p, {}) if isinstance(node.get(p), dict) or p not in node else node[p]
            if not isinstance(node, dict):
                raise SpecError(f"{key}: {p} is not a mapping")
        node[parts[-1]] = yaml.safe_load(raw)
    return data


def load_spec(path: str | Path, **overrides: Any) -> JobSpec:
    """YAML file + CLI overrides → a validated JobSpec."""
    path = Path(path)
    if not path.exists():
        raise SpecError(f"job spec: {path} does not exist")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise SpecError(f"job spec: {path} is not valid YAML: {e}") from None
    spec = JobSpec.from_dict(apply_overrides(data, **overrides))
    spec.resolve_files(path.parent)
    return spec
