"""Roles → TensorFlow cluster spec → TF_CONFIG, one place for YARN and Spark modes.

Role order (tfnode.contract.TF_ROLES) follows TFoS: ps first, then chief (or master), evaluator, workers.
TensorBoard is a role for scheduling, never a TensorFlow task, so it never appears in a cluster spec.
"""

from __future__ import annotations

import json
from collections.abc import Mapping

from tfnode.contract import CHIEF_ROLES, TF_ROLES, TRAINING_ROLES


def build_cluster_spec(addresses: Mapping[tuple[str, int], str]) -> dict[str, list[str]]:
    """{(job_name, task_index): "host:port"} → {"worker": ["h:p", ...], ...}, ordered by role then index.

    Raises ValueError naming the role when task indices are not 0..n-1 (a task missing from the rendezvous).
    """
    by_role: dict[str, dict[int, str]] = {}
    for (job, index), addr in addresses.items():
        if job not in TF_ROLES:
            continue
        by_role.setdefault(job, {})[index] = addr
    spec: dict[str, list[str]] = {}
    for role in TF_ROLES:
        tasks = by_role.get(role)
        if not tasks:
            continue
        missing = sorted(set(range(max(tasks) + 1)) - set(tasks))
        if missing:
            raise ValueError(f"cluster spec: {role} task(s) {missing} missing (have {sorted(tasks)})")
        spec[role] = [tasks[i] for i in range(len(tasks))]
    return spec


def num_workers(cluster_spec: Mapping[str, list[str]]) -> int:
    """Tasks that train: chief/master plus workers (TFoS's ctx.num_workers)."""
    return sum(len(cluster_spec.get(r, [])) for r in TRAINING_ROLES)


def worker_shard(cluster_spec: Mapping[str, list[str]], job_name: str, task_index: int) -> tuple[int, int]:
    """(num_shards, shard_index) for reading input by file: chief is shard 0, worker i is shard i+1."""
    chiefs = sum(len(cluster_spec.get(r, [])) for r in CHIEF_ROLES)
    if job_name in CHIEF_ROLES:
        return num_workers(cluster_spec), task_index
    if job_name == "worker":
        return num_workers(cluster_spec), chiefs + task_index
    return 1, 0  # ps and evaluator read no training shards


def training_cluster(cluster_spec: Mapping[str, list[str]]) -> dict[str, list[str]]:
    """The cluster spec without the evaluator: TF's documented form, in which the evaluator is no member of the
    training cluster (neither collectives nor the PS coordinator ever wait for it)."""
    return {r: a for r, a in cluster_spec.items() if r != "evaluator"}


def tf_config(cluster_spec: Mapping[str, list[str]], job_name: str, task_index: int) -> str:
    """The TF_CONFIG JSON for one task. Raises ValueError if the task is not in the spec."""
    if job_name not in cluster_spec or not 0 <= task_index < len(cluster_spec[job_name]):
        raise ValueError(f"TF_CONFIG: task {job_name}:{task_index} is not in the cluster spec {dict(cluster_spec)}")
    return json.dumps({"cluster": dict(cluster_spec), "task": {"type": job_name, "index": task_index}})


def task_tf_config(cluster: dict[str, list[str]], role: str, index: int) -> str:
    """A task's TF_CONFIG: its cluster is the training cluster (`training_cluster`, without the evaluator), in the
    evaluator's own TF_CONFIG too."""
    training = training_cluster(cluster)
    if role == "evaluator":
        return json.dumps({"cluster": training, "task": {"type": "evaluator", "index": index}})
    return tf_config(training, role, index)
