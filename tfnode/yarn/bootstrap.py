"""What every YARN container of a tfoy job runs: `python -m tfnode.yarn.bootstrap`.

A small supervisor process (no TensorFlow import) claims the task's slot, binds a port, registers in the skein KV,
waits for every peer (with a deadline), builds the cluster spec / TF_CONFIG and runs the task in a child process:
the user's `function(args, ctx)` for chief, MultiWorkerMirrored workers and the evaluator; a `tf.distribute.Server`
for ps tasks and ParameterServerStrategy workers, which serve until the chief has ended.

Running TensorFlow in a child is what makes restarts work: when a killed container comes back (YARN restarts it
under `max_restarts`), it bumps the generation in the KV; every supervisor then stops its child, re-registers and
starts it again, and the user code resumes from its last HDFS checkpoint. The child dies with its supervisor
(PR_SET_PDEATHSIG), so a `kill -9` never leaves an orphaned TensorFlow process (TFoS #120).

The outcome ("ok" or the traceback) goes to the KV, where `tfoy submit` reads and acknowledges it, and to stderr
(container logs, `tfoy logs`). What this module shares with the client (the job runtime, the environment the client
sets, the KV keys) is tfnode.contract's.
"""

from __future__ import annotations

import ctypes
import importlib
import json
import logging
import os
import random
import runpy
import signal
import socket
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path

from tfnode import contract, progress
from tfnode.cluster_spec import build_cluster_spec, task_tf_config, training_cluster
from tfnode.prepare import prepare_node
from tfnode.yarn import barrier as kvb

log = logging.getLogger("tfnode.yarn.bootstrap")

CTX_ENV = "TFOY_CTX"  # JSON handed from supervisor to child
RESULT_ENV = "TFOY_RESULT"  # file the child writes its traceback to
STACKS_ENV = "TFOY_STACKS"  # file the child's faulthandler dumps every thread's stack into on SIGUSR1
STACK_DUMP_WAIT_S = 2.0
RESTART_WAIT_S = 90  # how long a failed task waits for a restarted peer before reporting its failure
LOST_PEER_GRACE_S = 10  # how long the first task to fail looks for a lost peer (YARN's news of a killed container)
ACK_WAIT_S = 10
CHILD_STOP_GRACE_S = 5
CHILD_POLL_S = 0.5  # how often the supervisor looks at its child, the generation and the chief's outcome


def cuda_visible_devices(gpus: int, environ: dict[str, str]) -> str:
    """CUDA_VISIBLE_DEVICES for a task granted `gpus` yarn.io/gpu: none for CPU tasks (so two tasks on one host
    never collide on GPU 0, TFoS #146), the devices YARN's GPU plugin / container runtime exposed otherwise."""
    if gpus <= 0:
        return ""
    for key in ("CUDA_VISIBLE_DEVICES", "NVIDIA_VISIBLE_DEVICES"):
        granted = environ.get(key, "").strip()
        if granted and granted not in ("all", "none", "void"):
            ids = [d for d in granted.split(",") if d.strip()]
            return ",".join(ids[:gpus])
    return ",".join(str(i) for i in range(gpus))


# ---- supervisor ------------------------------------------------------------------------------------------------
def _ephemeral_range() -> tuple[int, int]:
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999


def _bind_port(rng: random.Random | None = None) -> socket.socket:
    """Reserves a port for this task's TensorFlow server, outside the kernel's ephemeral range.

    The reservation must be released before TensorFlow binds (its gRPC server refuses SO_REUSEPORT), and the child
    spends seconds importing TensorFlow in between: a port from the ephemeral range could meanwhile be taken by any
    outgoing connection on the host ("Could not start gRPC server"). Outside that range only an explicit bind can.
    """
    rng = rng or random.SystemRandom()
    low, _ = _ephemeral_range()
    first = 15000 if low > 16000 else 1024
    for _ in range(200):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            s.bind(("", rng.randint(first, low - 1)))
            return s
        except OSError:
            s.close()
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("", 0))
    return s


SUPERVISOR_ENV = "TFOY_SUPERVISOR_PID"


def _die_with_parent() -> None:
    """Called first thing in the task child: killed when the supervisor dies (no orphaned TensorFlow)."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except OSError:
        pass
    supervisor = os.environ.get(SUPERVISOR_ENV)
    if supervisor and os.getppid() != int(supervisor):  # it died before prctl took effect
        os._exit(1)


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(CHILD_STOP_GRACE_S)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _exit_text(code: int) -> str:
    """How the task process ended, when it left no traceback: Popen's negative code is the signal that killed it."""
    if code >= 0:
        return f"task process exited with code {code}"
    try:
        name = f" ({signal.Signals(-code).name})"
    except ValueError:
        name = ""
    return f"task process was killed by signal {-code}{name}"


class Supervisor:
    def __init__(self, kv, job: contract.JobRuntime, role: str, container_id: str, host: str):
        self.kv, self.job, self.role, self.container_id, self.host = kv, job, role, container_id, host
        self.index = -1

    def put_state(self, state: str, **extra) -> None:
        kvb.put_state(self.kv, self.role, self.index, state, container=self.container_id, host=self.host,
                      pid=os.getpid(), **extra)

    def report(self, ok: bool, detail: str = "") -> int:
        text = contract.outcome_text(ok, detail)
        if not ok:
            print(f"tfoy: task {self.role}:{self.index} failed:\n{detail}", file=sys.stderr, flush=True)
        self.kv.put(contract.outcome_key(self.role, self.index), text.encode())
        self.put_state("succeeded" if ok else "failed")
        if self.kv.get(contract.CLIENT_KEY) is not None:  # let the watching client read it before the app ends
            deadline = time.monotonic() + ACK_WAIT_S
            while self.kv.get(contract.ack_key(self.role, self.index)) is None and time.monotonic() < deadline:
                time.sleep(kvb.POLL_S)
        return 0 if ok else 1

    def chief_has_ended(self) -> bool:
        return kvb.chief_has_ended(self.kv, self.job.chief_task, self.job.restartable)

    def run(self) -> int:
        slot = kvb.claim_slot(self.kv, self.role, self.job.roles[self.role], self.container_id)
        self.index = slot.index
        task = contract.task_name(self.role, self.index)
        print(f"{contract.TASK_BANNER} {task} container {self.container_id} on {self.host}", flush=True)
        self.put_state("starting", restarted=slot.restarted)
        if slot.restarted:
            kvb.clear_outcome(self.kv, self.role, self.index)
            gen = kvb.bump_generation(self.kv)
            log.info("%s:%d restarted: generation %d", self.role, self.index, gen)
        while True:
            gen = kvb.current_generation(self.kv)
            sock = _bind_port()
            port = sock.getsockname()[1]
            self.kv.put(contract.addr_key(gen, self.role, self.index), f"{self.host}:{port}".encode())
            self.put_state("waiting", generation=gen)
            try:
                addrs = kvb.wait_for_peers(self.kv, gen, self.job.roles, self.job.barrier_timeout)
            except kvb.GenerationChanged:
                sock.close()
                continue
            except kvb.BarrierTimeout as e:
                sock.close()
                return self.report(False, str(e))
            cluster = build_cluster_spec(addrs)
            sock.close()  # released just before TensorFlow binds it in the child
            outcome = self._run_child(cluster, gen)
            if outcome == "restart":
                continue
            if outcome == "ok":
                return self.report(True)
            if self.job.restartable and self._rejoins_after_failure(gen):
                log.warning("task failed while a peer restarted; re-joining: %s", outcome.splitlines()[-1:])
                continue
            return self.report(False, outcome)

    def _rejoins_after_failure(self, gen: int) -> bool:
        """Whether this failed task waits for a peer's restart and re-joins, rather than reporting its failure (so
        that YARN restarts it).

        A failure is the task's own when it came first in the generation and no peer's container is found gone
        within LOST_PEER_GRACE_S (a killed peer takes the others' collectives down with it; the AM hears of the
        container's end a few seconds later): that task reports at once, since its own restart is the one its
        peers wait for. Every other failed task waits up to RESTART_WAIT_S for the generation to change.
        """
        self.put_state("waiting-for-restart", generation=gen)
        me = (self.role, self.index)
        suspect = kvb.claim_first_failure(self.kv, gen, contract.task_name(*me))
        start = time.monotonic()
        while time.monotonic() - start < RESTART_WAIT_S:
            if kvb.current_generation(self.kv) != gen:
                return True
            if suspect and (lost := kvb.lost_peers(self.kv, self.job.roles, me)):
                log.info("%s gone %.1fs after this task failed: waiting for its restart",
                         ", ".join(contract.task_name(*t) for t in lost), time.monotonic() - start)
                suspect = False
            if suspect and time.monotonic() - start >= LOST_PEER_GRACE_S:
                return False
            time.sleep(CHILD_POLL_S)
        return False

    def _run_child(self, cluster: dict[str, list[str]], gen: int) -> str:
        """Runs the task; returns "ok", "restart" or the failure text."""
        result = Path(f"tfoy-result-{self.role}-{self.index}-{gen}.txt")
        result.unlink(missing_ok=True)
        env = dict(os.environ)
        env.update(read_secrets())
        env["TF_CONFIG"] = task_tf_config(cluster, self.role, self.index)
        env["CUDA_VISIBLE_DEVICES"] = cuda_visible_devices(self.job.gpus.get(self.role, 0), os.environ)
        env[CTX_ENV] = json.dumps({"job_name": self.role, "task_index": self.index, "cluster_spec": cluster,
                                   "serve": self.job.serves_only(self.role), "generation": gen})
        env[RESULT_ENV] = str(result)
        env[SUPERVISOR_ENV] = str(os.getpid())
        progress_file = Path(f"tfoy-progress-{self.role}-{self.index}.json").resolve()
        stacks_file = Path(f"tfoy-stacks-{self.role}-{self.index}-{gen}.txt").resolve()
        progress_file.unlink(missing_ok=True)
        env[progress.PROGRESS_ENV] = str(progress_file)
        env[STACKS_ENV] = str(stacks_file)
        # No preexec_fn: it would make CPython fork (not vfork) this gRPC-using process and run gRPC's fork handlers,
        # whose restarted threads then abort on fds that close_fds closes before exec. The child ties itself to us.
        proc = subprocess.Popen([sys.executable, "-m", contract.CONTAINER_MODULE, "--child"], env=env)
        self.put_state("running", generation=gen, child_pid=proc.pid)
        waits_for_chief = self.job.waits_for_chief(self.role)
        trains = self.role in contract.TRAINING_ROLES and not self.job.serves_only(self.role)
        watch = ProgressWatch(self.kv, contract.progress_key(self.role, self.index), progress_file,
                              self.job.progress_timeout if trains else None)  # only what trains is watched
        while True:
            code = proc.poll()
            if code is not None:
                watch.poll()
                if code == 0:
                    return "ok"
                return result.read_text() if result.exists() else _exit_text(code)
            if kvb.current_generation(self.kv) != gen:
                _stop(proc)
                return "restart"
            if waits_for_chief and self.chief_has_ended():
                _stop(proc)  # ps / PS-mode workers serve until the chief ends; the evaluator follows it
                return "ok"
            if watch.poll():
                return watch.stall(proc, stacks_file, f"{self.role}:{self.index}")
            try:  # a sleep that ends when the task process does: the first failure in a generation is claimed first
                proc.wait(CHILD_POLL_S)
            except subprocess.TimeoutExpired:
                pass


class ProgressWatch:
    """The supervisor's side of tfnode.progress: copies the TF process's snapshots into the KV (where `tfoy submit`
    and `tfoy status` read them) and, with a timeout, notices a task that stopped making progress."""

    def __init__(self, kv, key: str, path: Path, timeout: float | None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.kv, self.key, self.path, self.timeout, self.clock = kv, key, path, timeout, clock
        self.last_seq: int | None = None
        self.last_change = clock()

    def poll(self) -> bool:
        """Forwards a new snapshot; True when the watchdog's time is up."""
        snap = progress.read_snapshot(self.path)
        if snap is not None and snap.get("seq") != self.last_seq:
            self.last_seq = snap.get("seq")
            self.last_change = self.clock()
            try:
                self.kv.put(self.key, json.dumps(snap).encode())
            except Exception as e:  # noqa: BLE001 - the AM going away ends us soon anyway
                log.debug("progress to the KV: %s", e)
        return self.timeout is not None and self.clock() - self.last_change > self.timeout

    def stall(self, proc: subprocess.Popen, stacks_file: Path, task: str) -> str:
        """Dumps every thread's Python stack of the stuck TF process (faulthandler, SIGUSR1), stops it, and
        returns the failure text naming the task and the timeout."""
        try:
            os.kill(proc.pid, signal.SIGUSR1)
            time.sleep(STACK_DUMP_WAIT_S)
        except ProcessLookupError:
            pass
        _stop(proc)
        stacks = stacks_file.read_text(errors="replace") if stacks_file.exists() else "(no stack dump was written)"
        print(f"tfoy: task {task} stalled; Python stacks of its threads:\n{stacks}", file=sys.stderr, flush=True)
        return (f"task {task} stalled: no progress report for {self.timeout:g}s (timeouts.progress: no model.fit "
                f"batch, no ctx.report); it was stopped. Python stacks of its threads:\n{stacks[-6000:]}")


def read_secrets(path: Path = Path(contract.SECRETS_FILE)) -> dict[str, str]:
    """The spec's secret env values, shipped as a private file (yarn_app/application.py), for the task's env only."""
    return json.loads(path.read_text()) if path.exists() else {}


def run_supervisor() -> int:
    import skein

    role = os.environ[contract.ROLE_ENV]
    job = contract.JobRuntime.from_env()
    container_id = os.environ.get("SKEIN_CONTAINER_ID", f"{role}_0")
    host = os.environ.get("NM_HOST") or socket.getfqdn()
    app = skein.ApplicationClient.from_current()
    from hdfs_io import tokens

    tokens.alias_tokens(Path.cwd())  # for every process of the container (the task, TensorBoard)
    if role == "tensorboard":
        from tfnode.yarn.tensorboard_role import run_tensorboard

        return run_tensorboard(app, job, host)
    sup = Supervisor(app.kv, job, role, container_id, host)
    try:
        return sup.run()
    except Exception:
        return sup.report(False, traceback.format_exc())


# ---- child --------------------------------------------------------------------------------------------------
def context_from_env():
    """The NodeContext of this task (also for script entry points, which get no ctx argument)."""
    from tfnode.context import NodeContext

    data = json.loads(os.environ[CTX_ENV])
    job = contract.JobRuntime.from_env()
    order = [(r, i) for r in data["cluster_spec"] for i in range(len(data["cluster_spec"][r]))]
    return NodeContext(job_name=data["job_name"], task_index=data["task_index"], cluster_spec=data["cluster_spec"],
                       executor_id=order.index((data["job_name"], data["task_index"])),
                       model_dir=job.model_dir, export_dir=job.export_dir, log_dir=job.log_dir)


def load_entry_point(entry_point: str):
    sys.path.insert(0, os.getcwd())  # shipped user files sit in the container's working folder
    module, _, func = entry_point.partition(":")
    return getattr(importlib.import_module(module), func)


def run_child() -> int:
    import faulthandler

    _die_with_parent()
    stacks = open(os.environ[STACKS_ENV], "w") if os.environ.get(STACKS_ENV) else sys.stderr  # noqa: SIM115
    faulthandler.register(signal.SIGUSR1, file=stacks, all_threads=True)  # the stall watchdog asks for it
    reporter = progress.Reporter(progress.FileSink(os.environ[progress.PROGRESS_ENV])) \
        if os.environ.get(progress.PROGRESS_ENV) else None
    # TF_USE_LEGACY_KERAS, if the spec chose Keras 2, came with the container's environment
    prepare_node(reporter=reporter)
    data = json.loads(os.environ[CTX_ENV])
    try:
        if data["serve"]:
            import tensorflow as tf

            server = tf.distribute.Server(tf.train.ClusterSpec(training_cluster(data["cluster_spec"])),
                                          job_name=data["job_name"], task_index=data["task_index"], protocol="grpc",
                                          start=True)
            server.join()
            return 0
        job = contract.JobRuntime.from_env()
        ctx = context_from_env()
        ctx.reporter = reporter
        if reporter is not None:
            reporter.report(phase="running", force=True)
        if job.entry_point.endswith(".py"):
            sys.argv = [job.entry_point, *job.args]
            runpy.run_path(job.entry_point, run_name="__main__")
        else:
            load_entry_point(job.entry_point)(job.args, ctx)
        return 0
    except SystemExit as e:
        if e.code in (0, None):
            return 0
        Path(os.environ[RESULT_ENV]).write_text(traceback.format_exc())
        return 1
    except BaseException:
        Path(os.environ[RESULT_ENV]).write_text(traceback.format_exc())
        traceback.print_exc()
        return 1


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return run_child() if argv[:1] == ["--child"] else run_supervisor()


if __name__ == "__main__":
    sys.exit(main())
