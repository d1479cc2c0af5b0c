"""What `tfoy submit` (yarn_app) and the containers it starts (tfnode.yarn.bootstrap) must agree on.

The client writes the containers' environment and reads, while the job runs, the keys the tasks write into the
skein key-value store; the tasks read that environment and wait on keys the client writes. The two sides ship
together but run apart, so a name changed on one side only fails no import and no unit test: the job hangs or
misreads at run time. Everything that crosses between them is defined here, once:

- the job runtime (`JobRuntime`) and the environment the client sets for every container (`JOB_ENV`, `ROLE_ENV`),
  with the private file of secret env values (`SECRETS_FILE`) and the module the container runs;
- the role names, and which roles are TensorFlow tasks, which train, which only serve, which run beside training;
- the key layout under `tfoy/` in the skein key-value store, and what a task's outcome says;
- the line each task prints first in its container log, by which `tfoy logs --task` finds its container.

How the keys are used (the rendezvous, restarts) is tfnode.yarn.barrier's business, and how the client shows them is
yarn_app's. Standard library only, so that both sides import it without TensorFlow or skein.

Keys (all under `tfoy/`):
  slot/<role>/<i>        owned by the container holding task i of role (vanishes when it exits): how a restarted
                         container finds which task it replaces (YARN gives it a new container id)
  started/<role>/<i>     set once the task first started; present at claim time = this is a restart
  gen                    generation: bumped by a restarted task, telling every peer to re-rendezvous
  addr/<gen>/<role>/<i>  host:port of each TensorFlow task in that generation
  state/<role>/<i>       what the task is doing, JSON (for `tfoy submit` / `tfoy status`)
  progress/<role>/<i>    the TF process's latest progress snapshot, JSON (tfnode.progress)
  outcome/<role>/<i>     "ok" or "failed\\n<traceback>"
  ack/<role>/<i>         the watching client has read the outcome
  client                 a client is watching (tasks then wait briefly for its ack before exiting)
"""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field

__all__ = [
    "ACK_PREFIX", "ADDR_PREFIX", "CHIEF_ROLES", "CLIENT_KEY", "CONTAINER_MODULE", "ENV_PREFIX", "FEEDLESS_ROLES",
    "FIRST_FAILURE_PREFIX", "GEN_KEY", "JOB_ENV", "KV_PREFIX", "OUTCOME_OK", "OUTCOME_PREFIX", "PROGRESS_PREFIX",
    "ROLE_ENV", "ROLE_NAMES", "SECRETS_FILE", "SERVER_ROLES_PS", "SIDE_ROLES", "SLOT_PREFIX", "STARTED_PREFIX",
    "STATE_PREFIX", "TASK_BANNER", "TF_ROLES", "TRAINING_ROLES", "USER_ENV", "JobRuntime", "ack_key", "addr_key",
    "addr_prefix", "failure_detail", "first_failure_key", "outcome_key", "outcome_text", "parse_task_keys",
    "parse_task_name", "progress_key", "slot_key", "started_key", "state_key", "task_name",
]

# ---- roles ---------------------------------------------------------------------------------------------------
ROLE_NAMES = ("chief", "worker", "ps", "evaluator", "tensorboard")  # the roles a YARN job spec may name
# TensorFlow tasks, in cluster-spec order (TFoS's: ps, chief or master, evaluator, workers). TensorBoard is a role
# for scheduling, never a TensorFlow task; "master" is TFoS's name for the chief (Spark mode's master_node).
TF_ROLES = ("ps", "chief", "master", "evaluator", "worker")
CHIEF_ROLES = ("chief", "master")
TRAINING_ROLES = ("chief", "master", "worker")  # the tasks that train (TFoS's ctx.num_workers counts them)
SERVER_ROLES_PS = ("ps", "worker")  # with ParameterServerStrategy these only serve (a tf.distribute.Server)
# Roles beside training: their failure (past max_restarts) is reported but neither stops training nor fails the job,
# as with TF's own evaluator (outside the cluster spec) and a TensorBoard that only reads what training wrote.
SIDE_ROLES = ("evaluator", "tensorboard")
FEEDLESS_ROLES = ("ps", "evaluator")  # Spark mode: nodes that take no InputMode.SPARK data

# ---- the container's environment -----------------------------------------------------------------------------
ENV_PREFIX = "TFOY_"  # tfoy's own variables: a job spec may set only the USER_ENV ones
# The settings a user may give a job (spec `env:`), each read in the containers: the TF plugin's and hdfs_io's
# HDFS client (docs/hdfs_io.md) and where staged files go. Every other TFOY_ name is set by tfoy, or means nothing in
# a container, so a spec that sets one is refused rather than silently ignored (a misspelt setting included).
USER_ENV = ("TFOY_HDFS_ATOMIC_WRITES", "TFOY_HDFS_CONNECT_TIMEOUT", "TFOY_HDFS_READER", "TFOY_HDFS_READER_NICE",
            "TFOY_HDFS_RPC_TIMEOUT", "TFOY_HDFS_SHORT_CIRCUIT", "TFOY_STAGE_DIR")
JOB_ENV = "TFOY_JOB"  # JobRuntime.encode(), set by yarn_app.application
ROLE_ENV = "TFOY_ROLE"  # the skein service (role) this container runs
ENV_LINK = "tfoy_env"  # the unpacked env archive in each container
CODE_LINK = "tfoy_code"  # the unpacked project code
SECRETS_FILE = "tfoy_secrets.json"  # security.secret_env values, localized privately (never in the container env)
RESERVED_FILES = (CODE_LINK, ENV_LINK, SECRETS_FILE)  # tfoy's own names in each container's working folder
CONTAINER_MODULE = "tfnode.yarn.bootstrap"  # what every container runs: `python -m tfnode.yarn.bootstrap`
TASK_BANNER = "tfoy task"  # each task's first log line: "tfoy task <role>:<i> ..." (how `tfoy logs --task` finds it)


@dataclass
class JobRuntime:
    """The part of the job spec every container needs (serialised into TFOY_JOB)."""

    entry_point: str
    args: list[str]
    roles: dict[str, int]  # TensorFlow roles → instances
    strategy: str  # multi_worker_mirrored | parameter_server
    barrier_timeout: float = 300
    progress_timeout: float | None = None  # the stall watchdog (timeouts.progress); None: off
    restartable: bool = False  # some TF role has max_restarts > 0
    gpus: dict[str, int] = field(default_factory=dict)
    model_dir: str | None = None
    export_dir: str | None = None
    log_dir: str | None = None

    @classmethod
    def from_env(cls) -> JobRuntime:
        return cls.decode(os.environ[JOB_ENV])

    def encode(self) -> str:
        """base64 JSON: YARN's launch script does not preserve quotes inside environment values."""
        return base64.b64encode(json.dumps(self.__dict__).encode()).decode()

    @classmethod
    def decode(cls, text: str) -> JobRuntime:
        return cls(**json.loads(base64.b64decode(text)))

    @property
    def chief_task(self) -> tuple[str, int]:
        return ("chief", 0) if self.roles.get("chief") else ("worker", 0)

    def serves_only(self, role: str) -> bool:
        """True for tasks that run a tf.distribute.Server instead of user code."""
        return self.strategy == "parameter_server" and role in SERVER_ROLES_PS

    def waits_for_chief(self, role: str) -> bool:
        return self.serves_only(role) or role == "evaluator"


# ---- the key-value store -------------------------------------------------------------------------------------
KV_PREFIX = "tfoy/"
GEN_KEY = f"{KV_PREFIX}gen"
CLIENT_KEY = f"{KV_PREFIX}client"
SLOT_PREFIX = f"{KV_PREFIX}slot/"
STARTED_PREFIX = f"{KV_PREFIX}started/"
ADDR_PREFIX = f"{KV_PREFIX}addr/"
STATE_PREFIX = f"{KV_PREFIX}state/"
PROGRESS_PREFIX = f"{KV_PREFIX}progress/"
OUTCOME_PREFIX = f"{KV_PREFIX}outcome/"
ACK_PREFIX = f"{KV_PREFIX}ack/"
FIRST_FAILURE_PREFIX = f"{KV_PREFIX}first-failure/"
OUTCOME_OK = "ok"


def task_name(role: str, index: int) -> str:
    return f"{role}:{index}"


def parse_task_name(name: str) -> tuple[str, int]:
    """"worker:1" → ("worker", 1), the inverse of task_name."""
    role, _, index = name.partition(":")
    return role, int(index)


def slot_key(role: str, i: int) -> str:
    return f"{SLOT_PREFIX}{role}/{i}"


def started_key(role: str, i: int) -> str:
    return f"{STARTED_PREFIX}{role}/{i}"


def addr_prefix(gen: int) -> str:
    return f"{ADDR_PREFIX}{gen}/"


def addr_key(gen: int, role: str, i: int) -> str:
    return f"{addr_prefix(gen)}{role}/{i}"


def state_key(role: str, i: int) -> str:
    return f"{STATE_PREFIX}{role}/{i}"


def progress_key(role: str, i: int) -> str:
    """The latest progress snapshot of a task (tfnode.progress), JSON."""
    return f"{PROGRESS_PREFIX}{role}/{i}"


def outcome_key(role: str, i: int) -> str:
    return f"{OUTCOME_PREFIX}{role}/{i}"


def ack_key(role: str, i: int) -> str:
    return f"{ACK_PREFIX}{role}/{i}"


def first_failure_key(gen: int) -> str:
    """The task whose process failed first in generation `gen` (the likely cause of its peers' failures)."""
    return f"{FIRST_FAILURE_PREFIX}{gen}"


def parse_task_keys(keys: Mapping[str, bytes], prefix: str) -> dict[tuple[str, int], bytes]:
    """{'<prefix><role>/<i>': v} → {(role, i): v}; keys outside the prefix, or not of that form, are left out."""
    out: dict[tuple[str, int], bytes] = {}
    for k, v in keys.items():
        if not k.startswith(prefix):
            continue
        role, _, idx = k[len(prefix):].partition("/")
        if idx.isdigit():
            out[(role, int(idx))] = v
    return out


def outcome_text(ok: bool, detail: str = "") -> str:
    """What a task writes under its outcome key: "ok", or "failed" and the traceback on the lines below."""
    return OUTCOME_OK if ok else "failed\n" + detail


def failure_detail(outcome: str) -> str:
    """The traceback in a failed task's outcome text."""
    return outcome.partition("\n")[2]
