"""The job spec: YAML in, typed objects out, every error naming the key that is wrong.

pydantic, not skein's model objects: skein's Resources and Service cover only the containers, while a tfoy spec
has keys of its own, errors that name the key path, and a YAML round trip (`from_dict` / `to_dict` / `from_yaml` /
`to_yaml`, like skein's model.py). pydantic gives declared types, constraints and each error's location;
`_spec_error` words it as ours: `roles.worker.instances: must be >= 0, got -1`. Strict: `instances: "2"` or
`shared: "yes"` is refused, not coerced; only the strings tfoy passes on (`args`, `tags`, `inputs`, `files`, `env`)
take numbers. CLI flags override the YAML through `apply_overrides`. Checks that need the cluster (queue, maximum
allocation, HDFS paths) live in `yarn_app.cluster_checks`, those that read user code in `yarn_app.entry_point`: a spec
validates offline.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Hashable
from pathlib import Path
from typing import Annotated, Any, Literal, get_args

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic.functional_validators import AfterValidator, BeforeValidator, WrapValidator, model_validator
from pydantic_core import PydanticUseDefault

from tfnode.contract import ENV_PREFIX, RESERVED_FILES, ROLE_NAMES, TF_ROLES, USER_ENV
from yarn_app.errors import TfoyError

__all__ = ["JobSpec", "PythonEnvSpec", "RoleSpec", "SecuritySpec", "SpecError", "TimeoutSpec", "apply_overrides",
           "load_spec", "parse_memory"]

# YARN's (YarnConfiguration.APPLICATION_MAX_TAG_LENGTH, APPLICATION_MAX_TAGS): more fails the submission, after the
# env was shipped; tfoy adds two tags of its own (`tfoy`, and one per submit attempt)
MAX_TAG_LENGTH, MAX_TAGS, TFOY_TAGS = 100, 10, 2
# set by tfoy's container launch (yarn_app/application.py) to find the shipped code, Python and native libraries
RESERVED_ENV = frozenset({"PYTHONPATH", "PYTHONHOME", "LD_LIBRARY_PATH"})
# our own units, not skein.model.parse_memory's: skein reads `1536m` and `2g` as powers of 1000 (1465, 1908 MiB)
_MEM_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(?:i?b)?\s*$", re.I)
_MEM_UNITS = {"": 1, "k": 1 / 1024, "m": 1, "g": 1024, "t": 1024 * 1024}
INT32_MAX = 2**31 - 1  # YARN's counts (instances, vcores, restarts) are int32: more fails in skein, after shipping


class SpecError(TfoyError, ValueError):
    """A job spec problem; the message starts with the offending key."""


# ---- value types: a key's own rules (the rules between keys are each section's `validate`) ---------------------------
def _got(value: Any) -> str:
    return f"{type(value).__name__} {value!r}"


def _mib(value: Any) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        mib = value
    elif isinstance(value, str) and (m := _MEM_RE.match(value)):
        mib = int(float(m.group(1)) * _MEM_UNITS[m.group(2).lower()])
    else:
        raise ValueError(f"expected memory (MiB or e.g. '2 GiB'), got {_got(value)}")
    if mib <= 0:
        raise ValueError(f"must be positive, got {value!r}")
    return mib


def parse_memory(value: Any, key: str) -> int:
    """MiB from an int (MiB) or a string like '2 GiB', '1536m', '2g'; a SpecError naming `key` otherwise."""
    try:
        return _mib(value)
    except ValueError as e:
        raise SpecError(f"{key}: {e}") from None


def _text(value: Any) -> str:  # `args: [--epochs, 5]`: YAML reads an int, the command line takes "5"
    if isinstance(value, str | int | float) and not isinstance(value, bool):
        return str(value)
    raise ValueError(f"expected str, int or float, got {_got(value)}")


def _tag(tag: str) -> str:
    if not tag or len(tag) > MAX_TAG_LENGTH:
        raise ValueError(f"YARN takes tags of 1 to {MAX_TAG_LENGTH} characters, got {len(tag)}")
    if not (tag.isascii() and tag.isprintable()):
        raise ValueError(f"YARN takes tags of printable ASCII characters only, got {tag!r}")
    return tag


def _tag_count(tags: list[str]) -> list[str]:
    if len({t.lower() for t in tags}) > MAX_TAGS - TFOY_TAGS:  # YARN counts them before lowercasing; tfoy merges
        raise ValueError(f"at most {MAX_TAGS - TFOY_TAGS} tags (YARN takes {MAX_TAGS}, and tfoy adds {TFOY_TAGS}), "
                         f"got {len(tags)}")
    return tags


def _file_name(name: str) -> str:
    """skein localizes each of `files` under its key in the container's working folder: a name, not a path."""
    bare = name.removeprefix("./")  # skein takes `./name` too
    if bare in ("", ".", "..") or "/" in bare or "\\" in bare:
        raise ValueError(f"a file name in the container's working folder, not a path: {name!r}")
    if bare in RESERVED_FILES:
        raise ValueError(f"tfoy's own name in every container ({', '.join(RESERVED_FILES)}): use another")
    return bare  # the name it is localized under


class _StrictLoader(yaml.SafeLoader):
    """yaml.safe_load keeps the last of two equal keys without a word: a second `roles:` drops the first."""


def _unique_keys(loader: _StrictLoader, node: yaml.MappingNode, deep: bool = False) -> dict:
    first: dict[Any, int] = {}
    for key_node, _ in node.value:
        if key_node.tag == "tag:yaml.org,2002:merge":  # `<<: *base`: merged by construct_mapping, not a key
            continue
        key = loader.construct_object(key_node, deep=deep)
        if isinstance(key, Hashable) and key in first:
            raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r} (first on line {first[key]})",
                                                    key_node.start_mark)
        if isinstance(key, Hashable):
            first[key] = key_node.start_mark.line + 1
    return loader.construct_mapping(node, deep)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _unique_keys)


def _load_yaml(text: str) -> Any:
    return yaml.load(text, Loader=_StrictLoader)  # a SafeLoader: plain data only


def _rule(test: Callable[[Any], Any], words: str) -> AfterValidator:
    """A value's own rule: where `test` fails, a ValueError in `words` (`{value}` the value)."""
    def check(value: Any) -> Any:
        if not test(value):
            raise ValueError(words.format(value=value))
        return value

    return AfterValidator(check)


def _named(pattern: str, what: str) -> AfterValidator:
    return _rule(lambda name: re.fullmatch(pattern, name), f"not a {what}: {{value!r}}")


def _default_if_null(value: Any, handler: Any) -> Any:
    if value is None:
        raise PydanticUseDefault()
    return handler(value)


OrDefault = WrapValidator(_default_if_null)  # YAML's empty value (`tags:`) is the default
Text = Annotated[str, BeforeValidator(_text)]
Texts = Annotated[list[Text], OrDefault]
Tags = Annotated[list[Annotated[Text, AfterValidator(_tag)]], AfterValidator(_tag_count), OrDefault]
Memory = Annotated[int, BeforeValidator(_mib)]
MAX_SECONDS = 10 * 366 * 86400  # ten years: beyond it a deadline is no bound (and datetime overflows near 3e11 s)
Seconds = Annotated[float, _rule(lambda s: math.isfinite(s) and 0 < s <= MAX_SECONDS,  # .nan or .inf never end
                                  "must be a positive number of seconds, got {value:g}"
                                  f" (at most {MAX_SECONDS}: ten years)")]
RoleName = Annotated[str, _rule(lambda name: name in ROLE_NAMES,
                                f"unknown key (allowed: {', '.join(sorted(ROLE_NAMES))})")]
EnvName = Annotated[Text, _rule(lambda key: key not in RESERVED_ENV,
                                "set by tfoy in every container, and a job that changed it would not start; ship "
                                "code with files: and libraries with python_env:"),
                    _rule(lambda key: not key.startswith(ENV_PREFIX) or key in USER_ENV,
                          f"tfoy's own; of its variables a job may set {', '.join(USER_ENV)}"),
                    _rule(lambda key: re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key), "not an environment variable name")]
UserNames = Annotated[list[Annotated[str, _named(r"[\w.-]+|\*", "user name")]], OrDefault]
Strategy = Literal["auto", "multi_worker_mirrored", "parameter_server"]


class _Section(BaseModel):
    """Unknown keys refused, no coercion, a null section (`timeouts:` left empty) is its defaults."""

    model_config = ConfigDict(extra="forbid", strict=True)

    @model_validator(mode="before")
    @classmethod
    def _null_is_empty(cls, data: Any) -> Any:
        return {} if data is None else data

    @model_validator(mode="after")
    def _rules(self) -> _Section:
        self.validate()
        return self

    def validate(self) -> None:
        """The rules between keys: run on construction, and again by a caller that changed a key since."""


class RoleSpec(_Section):
    instances: int = Field(1, ge=0, le=INT32_MAX)
    memory: Memory = 2048  # MiB
    vcores: int = Field(1, ge=1, le=INT32_MAX)
    gpus: int = Field(0, ge=0, le=INT32_MAX)
    node_label: Annotated[str, _named(r"[A-Za-z0-9][\w.-]{0,254}", "YARN node label")] | None = None
    max_restarts: int = Field(0, ge=0, le=INT32_MAX)


class PythonEnvSpec(_Section):
    """How containers get Python: `archive: auto` packs this venv; a path uses a prebuilt archive; `python`
    uses an interpreter already installed on every node (no archive shipped, as `archive: none`).

    `shared` (only with `archive: auto`): the packed archive is world-readable on HDFS, by choice, so that every
    NodeManager may cache it PUBLIC across jobs (unpacked once per node). The default is private: readable by its
    owner only and localized with APPLICATION visibility (once per application and node)."""

    archive: str | None = "auto"
    python: str | None = None
    exclude: Annotated[list[str], OrDefault] = ["pyspark", "py4j"]
    shared: bool = False

    @model_validator(mode="before")
    @classmethod
    def _no_archive(cls, data: Any) -> Any:
        if isinstance(data, dict) and (data.get("archive") == "none" or
                                       (data.get("python") is not None and "archive" not in data)):
            return {**data, "archive": None}
        return data

    def validate(self) -> None:
        if self.python is not None and not self.python.strip():
            raise SpecError("python_env.python: empty; give the interpreter's path on every node (/usr/bin/python3)")
        if self.archive is not None and not self.archive.strip():
            raise SpecError("python_env.archive: empty; give auto, none or the path of a packed env")
        if self.archive is None and self.python is None:
            raise SpecError("python_env: give an archive ('auto' or a path) or the python installed on the nodes")
        if self.shared and self.archive != "auto":
            uses = f"archive: {self.archive}" if self.archive is not None else "python:"
            raise SpecError(f"python_env.shared: only for archive: auto (tfoy packs and caches that one), not with "
                            f"{uses}")


class TimeoutSpec(_Section):
    """Seconds. allocation: containers granted; barrier: every task registered; job: the whole application;
    progress: the stall watchdog (off by default): a task whose TF process reports no progress for this long (no
    model.fit batch, no ctx.report) is dumped (every thread's Python stack into its log) and failed."""

    allocation: Seconds = 300
    barrier: Seconds = 300
    job: Seconds = 3600
    progress: Seconds | None = None


class SecuritySpec(_Section):
    """Kerberos and access: who submits (the ticket cache by default, or a principal's keytab), who else may see
    or change the application (YARN ACLs; the owner and the cluster's admins always may), which `env` values are
    secrets (never printed, never in a launch script: given to the tasks in a file localized for the application
    only, which each task reads into its environment)."""

    principal: str | None = None
    keytab: str | None = None
    view_acls: UserNames = []
    modify_acls: UserNames = []
    secret_env: Annotated[list[str], OrDefault] = []

    def validate(self) -> None:
        """Also after `tfoy submit --principal/--keytab` (or the Airflow operator's) set them."""
        if self.keytab is not None and self.principal is None:
            raise SpecError("security.principal: a keytab needs the principal to log in as (e.g. you@REALM)")
        if self.principal is not None and not re.fullmatch(r"[^\s@/]+(/[^\s@/]+)?(@[^\s@]+)?", self.principal):
            raise SpecError(f"security.principal: not a Kerberos principal: {self.principal!r}")


class JobSpec(_Section):
    """A tfoy job: the entry point, the roles (a YARN service each), what ships with them, their limits."""

    entry_point: str = Field(description="package.module:function or a script.py")
    roles: dict[RoleName, RoleSpec] = Field(description="at least roles.worker.instances >= 1")
    name: Annotated[str, OrDefault] = "tfoy"
    queue: Annotated[str, _named(r"[\w.-]+", "queue name"), OrDefault] = "default"
    tags: Tags = []
    args: Texts = []
    files: Annotated[dict[Annotated[Text, AfterValidator(_file_name)], Text], OrDefault] = {}
    env: Annotated[dict[EnvName, Text], OrDefault] = {}
    python_env: PythonEnvSpec = Field(default_factory=PythonEnvSpec)
    timeouts: TimeoutSpec = Field(default_factory=TimeoutSpec)
    strategy: Annotated[Strategy, OrDefault] = Field("auto", description=f"one of {', '.join(get_args(Strategy))}")
    # 2: tf-keras (Keras 2) as tf.keras in every task (TF_USE_LEGACY_KERAS=1)
    keras: Literal[2, 3] = Field(3, description="2 (tf-keras) or 3 (TF's default Keras)")
    model_dir: str | None = None
    export_dir: str | None = None
    log_dir: str | None = None
    inputs: Texts = []  # HDFS paths that must exist before submission
    security: SecuritySpec = Field(default_factory=SecuritySpec)
    # where the client records each job's end (home-relative on the defaultFS)
    history_dir: Annotated[str, OrDefault] = ".tfoy/history"

    # ---- (de)serialisation -------------------------------------------------------------------------------
    @classmethod
    def from_dict(cls, data: Any) -> JobSpec:
        try:
            return cls.model_validate(data)
        except ValidationError as e:
            raise _spec_error(e) from None

    def to_dict(self) -> dict:
        return self.model_dump()

    @classmethod
    def from_yaml(cls, text: str) -> JobSpec:
        try:
            data = _load_yaml(text)
        except yaml.YAMLError as e:
            raise SpecError(f"job spec: not valid YAML: {e}") from None
        return cls.from_dict(data)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    @classmethod
    def from_file(cls, path: str | Path) -> JobSpec:
        return load_spec(path)

    # ---- rules ------------------------------------------------------------------------------------------
    def validate(self) -> None:
        """Offline checks between keys: the roles make a TensorFlow cluster, the strategy fits them."""
        workers = self.roles.get("worker")
        if workers is None or workers.instances < 1:
            raise SpecError("roles.worker.instances: a job needs at least 1 worker (got 0)")
        for name in ("chief", "evaluator", "tensorboard"):
            if name in self.roles and self.roles[name].instances > 1:
                raise SpecError(f"roles.{name}.instances: at most 1, got {self.roles[name].instances}")
        if self.effective_strategy == "parameter_server":
            if not self.has("ps"):
                raise SpecError("roles.ps: strategy parameter_server needs at least one ps task")
            if not self.has("chief"):
                raise SpecError("roles.chief: strategy parameter_server needs a chief (the coordinator)")
        elif self.has("ps"):
            raise SpecError(f"roles.ps: ps tasks need strategy parameter_server, not {self.strategy}")
        if self.has("tensorboard") and not self.log_dir:
            raise SpecError("log_dir: the tensorboard role serves log_dir, which is not set")
        for i, key in enumerate(self.security.secret_env):
            if key not in self.env:
                raise SpecError(f"security.secret_env[{i}]: {key} is not a key of env")

    def add_reattach_tag(self, tag: str) -> None:
        """`--reattach TAG` (or the Airflow operator's run tag) joins the tags, under their rules, before any run
        is claimed or env shipped."""
        try:
            if _tag(tag).lower() not in {t.lower() for t in self.tags}:
                self.tags = _tag_count([*self.tags, tag])
        except ValueError as e:
            raise SpecError(f"--reattach {tag!r}: {e}") from None

    def task_paths(self) -> list[tuple[str, str]]:
        """(spec key, path) of each filesystem path the tasks use: checked against the cluster before submission,
        and each filesystem among them gets a delegation token on a Kerberized cluster."""
        dirs = {"model_dir": self.model_dir, "export_dir": self.export_dir, "log_dir": self.log_dir}
        return [*((f"inputs[{i}]", p) for i, p in enumerate(self.inputs)), *((k, v) for k, v in dirs.items() if v),
                *((f"files.{k}", v) for k, v in self.files.items() if "://" in v)]  # the others skein uploads

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
        if self.entry_point.endswith(".py"):  # shipped, since only the edge node is sure to have it
            candidate = (base / self.entry_point).resolve()
            if candidate.exists() and Path(self.entry_point).name not in self.files:
                self.files[Path(self.entry_point).name] = str(candidate)
                self.entry_point = Path(self.entry_point).name

    def check_entry_point(self) -> None:
        """The entry point exists and compiles, without running it: `yarn_app.entry_point.check_entry_point`."""
        from yarn_app.entry_point import check_entry_point  # which imports this module (SpecError)

        check_entry_point(self.entry_point, self.files)


# ---- pydantic's errors in our words --------------------------------------------------------------------------------
_WORDS = {  # by pydantic's error type; ctx, input, got, hint (the field's description) and allowed (keys) fill them
    "missing": "required ({hint})",
    "extra_forbidden": "unknown key (allowed: {allowed})",
    "literal_error": "{hint}, got {input!r}",
    "greater_than_equal": "must be >= {ge}, got {input!r}",
    "less_than_equal": "must be <= {le}, got {input!r}",
    "int_type": "expected int, got {got}",
    "float_type": "expected int or float, got {got}",
    "string_type": "expected str, got {got}",
    "bool_type": "expected bool, got {got}",
    "list_type": "expected list, got {got}",
    "dict_type": "expected a mapping, got {got}",
    "model_type": "expected a mapping, got {got}",
}


def _spec_error(error: ValidationError) -> SpecError:
    """One SpecError for a ValidationError: its first error (a misspelt key first: it often explains the others),
    after the key path (`roles.worker.instances`, `python_env.exclude[2]`)."""
    err = min(error.errors(), key=lambda e: e["type"] != "extra_forbidden")
    cause = err.get("ctx", {}).get("error")
    if isinstance(cause, SpecError):  # a section's validate(): worded with its own keys
        return cause
    path = ""
    for part in (p for p in err["loc"] if p != "[key]"):
        path += f"[{part}]" if isinstance(part, int) else f".{part}" if path else str(part)
    if isinstance(cause, ValueError):  # from a value type above
        return SpecError(f"{path or 'job spec'}: {cause}")
    holder: Any = JobSpec  # what holds the key at the error's location: a section, or a mapping of them
    for part in err["loc"][:-1]:
        fields = getattr(holder, "model_fields", {})
        holder = fields[part].annotation if part in fields else (get_args(holder) or (None,))[-1]
    fields = getattr(holder, "model_fields", {})
    field = fields.get(err["loc"][-1]) if err["loc"] else None
    words = _WORDS.get(err["type"], "{msg}").format(
        **err.get("ctx", {}), input=err["input"], got=_got(err["input"]), msg=err["msg"],
        hint=field.description if field else "", allowed=", ".join(sorted(fields)))
    return SpecError(f"{path or 'job spec'}: {words}")


def apply_overrides(data: dict, name: str | None = None, queue: str | None = None, tags: list[str] | None = None,
                    sets: list[str] | None = None) -> dict:
    """CLI flags over the YAML mapping (before validation): `--set roles.worker.instances=3` parses YAML values."""
    if data is not None and not isinstance(data, dict):  # overrides apply to a mapping only
        raise SpecError(f"job spec: expected a mapping, got {_got(data)}")
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
        if not all(parts):
            raise SpecError(f"--set {item}: expected dotted.key=value, and {key.strip()!r} has an empty key")
        for p in parts[:-1]:
            if node.get(p) is None:  # absent, or a null section (`worker:` left empty): its defaults
                node[p] = {}
            node = node[p]
            if not isinstance(node, dict):
                raise SpecError(f"{key}: {p} is not a mapping")
        try:
            node[parts[-1]] = _load_yaml(raw)
        except yaml.YAMLError as e:
            raise SpecError(f"--set {key.strip()}: not a YAML value ({str(e).splitlines()[0]}): {raw!r}") from None
    return data


def load_spec(path: str | Path, **overrides: Any) -> JobSpec:
    """YAML file + CLI overrides → a validated JobSpec."""
    path = Path(path)
    if not path.exists():
        raise SpecError(f"job spec: {path} does not exist")
    if path.is_dir():
        raise SpecError(f"job spec: {path} is a folder, not a YAML file")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise SpecError(f"job spec: {path} is not UTF-8 text (byte {e.start})") from None
    except OSError as e:
        raise SpecError(f"job spec: {path}: {e.strerror}") from None
    try:
        data = _load_yaml(text)
    except yaml.YAMLError as e:
        raise SpecError(f"job spec: {path} is not valid YAML: {e}") from None
    spec = JobSpec.from_dict(apply_overrides(data, **overrides))
    spec.resolve_files(path.parent)
    return spec
