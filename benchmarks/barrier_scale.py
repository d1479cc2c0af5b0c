"""Scale of tfoy's start-up barrier: N tasks claiming slots and rendezvousing in a real skein AM's key-value store.

Every container of a tfoy job runs `tfnode.yarn.bootstrap`, whose Supervisor claims a slot (`claim_slot`), publishes its
address under the current generation (`addr_key`), waits for all peers (`wait_for_peers`) and builds the cluster
spec (`build_cluster_spec`). At scale, start-up is bounded by the load that protocol puts on the ApplicationMaster's
KV store, not by YARN, so this benchmark isolates it: one skein application on the cluster named by HADOOP_CONF_DIR,
with one container in which N simulated tasks run exactly the Supervisor's KV sequence: claim_slot,
put_state("starting"), current_generation, a real bound port (bootstrap's `_bind_port`), put(addr_key),
put_state("waiting"), wait_for_peers, build_cluster_spec. The tasks are threads spread over a few processes
(`--processes`), each process with its own skein client (one gRPC channel, as each container has). Roles are a chief
and N-1 workers. All tasks start at the same moment, and all claim with the one real container id (the AM refuses
key owners that are no running container), so they all race for the same slots: the worst case for claim_slot.
In a real job, containers trickle in over seconds, and worker_i goes for index i first.

One application with several rounds, not one per N: the AM (a JVM) and the container start once, which keeps the
load on a small shared cluster low and keeps the 10-20 s of application start-up out of the run. The rounds are
independent: the container discards the whole `tfoy/` prefix before each one. An unreported warm-up round comes
first, so that the smallest N does not pay for the AM's JIT warming up. Repeat an N to see the spread
(`--tasks 256,256,256`); on a loaded machine it is wide.

Each round checks that every task holds the same cluster spec, with N distinct addresses, its own at its index.
Reported per N: seconds from the first task entering claim_slot to the last task holding the spec, the same per
task, the claim phase alone (claim_s, up to the last claim), first registration to last spec (reg→spec), and KV
calls: all of them, per task, the claim_slot ones, and by method (counted by a wrapper around each task's kv).
The code reaches the container the way it reaches real jobs (yarn_app.code_zip.build_code_zip, localized as an archive
on PYTHONPATH; `--code-root` ships another copy of the packages, to compare versions). The interpreter is this
venv's Python, because the NodeManagers run on this machine, so the env archive is not needed.

    python benchmarks/barrier_scale.py --tasks 16,64,256      (or: ./build.sh bench barrier_scale)

Last line: `RESULT tasks=<largest N> seconds=<s>`.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import multiprocessing as mp
import os
import socket
import sys
import tempfile
import threading
import time
import traceback
from collections import Counter
from pathlib import Path
from typing import Any

log = logging.getLogger("barrier_scale")

KEY_PREFIX = "bench/"  # the benchmark's own keys, outside tfnode.yarn.barrier's "tfoy/"
RELEASE_KEY = f"{KEY_PREFIX}release"
ERROR_KEY = f"{KEY_PREFIX}error"
CODE_LINK = "tfoy_code"
SCRIPT = "barrier_scale.py"


def result_key(i: int) -> str:
    """Where the container puts the measurements of reported round i (0-based, in --tasks order)."""
    return f"{KEY_PREFIX}result/{i}"


def roles_for(n: int) -> dict[str, int]:
    return {"chief": 1, "worker": n - 1} if n > 1 else {"chief": 1}


# ---- inside the container --------------------------------------------------------------------------------------
class CountingKV:
    """Forwards to a skein KeyValueStore, counting calls by method name (one per task: no locking needed)."""

    def __init__(self, kv: Any):
        self._kv = kv
        self.calls: Counter[str] = Counter()

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._kv, name)
        if not callable(attr):
            return attr

        def counted(*args: Any, **kwargs: Any) -> Any:
            self.calls[name] += 1
            return attr(*args, **kwargs)

        return counted


def simulated_task(kv: Any, role: str, roles: dict[str, int], container_id: str, host: str,
                   timeout: float) -> dict[str, Any]:
    """What Supervisor.run does up to the cluster spec (tfnode/yarn/bootstrap.py), timed."""
    from tfnode.cluster_spec import build_cluster_spec
    from tfnode.yarn import barrier as kvb
    from tfnode.yarn.bootstrap import _bind_port

    ckv = CountingKV(kv)
    start = time.time()
    slot = kvb.claim_slot(ckv, role, roles[role], container_id)
    claimed = time.time()
    claim_ops = sum(ckv.calls.values())
    kvb.put_state(ckv, role, slot.index, "starting", container=container_id, host=host, pid=os.getpid(),
                  restarted=slot.restarted)
    gen = kvb.current_generation(ckv)
    sock = _bind_port()
    try:
        addr = f"{host}:{sock.getsockname()[1]}"
        ckv.put(kvb.addr_key(gen, role, slot.index), addr.encode())
        registered = time.time()
        kvb.put_state(ckv, role, slot.index, "waiting", container=container_id, host=host, pid=os.getpid(),
                      generation=gen)
        addrs = kvb.wait_for_peers(ckv, gen, roles, timeout)
        cluster = build_cluster_spec(addrs)
        done = time.time()
    finally:
        sock.close()
    return {"role": role, "index": slot.index, "addr": addr, "start": start, "claimed": claimed,
            "registered": registered, "done": done, "calls": dict(ckv.calls), "claim_ops": claim_ops,
            "spec": json.dumps(cluster, sort_keys=True)}


def run_process(task_roles: list[str], roles: dict[str, int], timeout: float, poll_s: float, ready: Any,
                go: Any, out: Any) -> None:
    """One process of simulated tasks: its own skein client (one gRPC channel), one thread per task."""
    import skein

    import tfnode.yarn.barrier

    tfnode.yarn.barrier.POLL_S = poll_s  # the container's value (spawned processes import the module afresh)
    try:
        kv = skein.ApplicationClient.from_current().kv
        container_id = os.environ["SKEIN_CONTAINER_ID"]
        host = os.environ.get("NM_HOST") or socket.getfqdn()
        kv.get(RELEASE_KEY)  # the channel is connected before the clock starts
        results: list[dict[str, Any]] = []
        errors: list[str] = []
        release = threading.Event()

        def body(role: str) -> None:
            release.wait()
            try:
                results.append(simulated_task(kv, role, roles, container_id, host, timeout))
            except Exception:
                errors.append(traceback.format_exc())

        threads = [threading.Thread(target=body, args=(r,), daemon=True) for r in task_roles]
        for t in threads:
            t.start()
        ready.put(os.getpid())
        go.wait()
        release.set()
        for t in threads:
            t.join()
        out.put({"results": results, "errors": errors})
    except Exception:
        out.put({"results": [], "errors": [traceback.format_exc()]})


def run_round(kv: Any, n: int, processes: int, timeout: float) -> dict[str, Any]:
    """N simulated tasks over `processes` processes; returns the round's measurements (raises if it failed)."""
    import tfnode.yarn.barrier

    roles = roles_for(n)
    kv.discard_prefix("tfoy/")  # an independent rendezvous: no slots, generations or addresses left over
    task_roles = [r for r, k in roles.items() for _ in range(k)]
    procs_n = max(1, min(processes, n))
    ctx = mp.get_context("spawn")  # gRPC does not survive fork
    ready, out, go = ctx.Queue(), ctx.Queue(), ctx.Event()
    poll_s = tfnode.yarn.barrier.POLL_S
    procs = [ctx.Process(target=run_process, args=(task_roles[p::procs_n], roles, timeout, poll_s, ready, go, out))
             for p in range(procs_n)]
    for p in procs:
        p.start()
    try:
        for _ in procs:
            ready.get(timeout=120)
        go.set()
        parts = [out.get(timeout=timeout + 120) for _ in procs]
    finally:
        for p in procs:
            p.join(10)
            if p.is_alive():
                p.kill()
    errors = [e for part in parts for e in part["errors"]]
    if errors:
        raise RuntimeError(f"{len(errors)} task(s) failed, first:\n{errors[0]}")
    results = [r for part in parts for r in part["results"]]
    check(results, roles)
    calls: Counter[str] = Counter()
    for r in results:
        calls.update(r["calls"])
    first = min(r["start"] for r in results)
    return {"tasks": n, "processes": procs_n, "poll_s": poll_s,
            "seconds": max(r["done"] for r in results) - first,
            "claim_s": max(r["claimed"] for r in results) - first,
            "register_to_spec_s": max(r["done"] for r in results) - min(r["registered"] for r in results),
            "kv_ops": sum(calls.values()), "claim_ops": sum(r["claim_ops"] for r in results),
            "kv_calls": dict(calls)}


def check(results: list[dict[str, Any]], roles: dict[str, int]) -> None:
    """Every task holds the same spec: all N tasks, distinct addresses, each task's own address at its index."""
    n = sum(roles.values())
    if len(results) != n:
        raise AssertionError(f"{len(results)} of {n} tasks finished")
    digests = {hashlib.sha256(r["spec"].encode()).hexdigest() for r in results}
    if len(digests) != 1:
        raise AssertionError(f"tasks hold {len(digests)} different cluster specs")
    spec = json.loads(results[0]["spec"])
    if {r: len(a) for r, a in spec.items()} != roles:
        raise AssertionError(f"cluster spec has {({r: len(a) for r, a in spec.items()})}, want {roles}")
    if len({a for addrs in spec.values() for a in addrs}) != n:
        raise AssertionError("cluster spec repeats an address")
    for r in results:
        if spec[r["role"]][r["index"]] != r["addr"]:
            raise AssertionError(f"{r['role']}:{r['index']} is not at its own index in the spec")


def container_main(opts: argparse.Namespace) -> int:
    import skein

    import tfnode.yarn.barrier

    app = skein.ApplicationClient.from_current()
    if opts.poll_s:
        tfnode.yarn.barrier.POLL_S = opts.poll_s
    log.info("tfnode from %s, POLL_S=%s, %s", tfnode.yarn.barrier.__file__, tfnode.yarn.barrier.POLL_S, sys.executable)
    try:
        if opts.warmup:
            log.info("warm-up round %s", run_round(app.kv, opts.warmup, opts.processes, opts.barrier_timeout))
        for i, n in enumerate(parse_tasks(opts.tasks)):
            res = run_round(app.kv, n, opts.processes, opts.barrier_timeout)
            log.info("round %s", res)
            app.kv.put(result_key(i), json.dumps(res).encode())
    except Exception:
        app.kv.put(ERROR_KEY, traceback.format_exc().encode())
        log.exception("benchmark failed")
    deadline = time.monotonic() + 120  # keep the AM (and its KV) alive until the client has read everything
    while app.kv.get(RELEASE_KEY) is None and time.monotonic() < deadline:
        time.sleep(0.2)
    return 0


# ---- the submitting side ---------------------------------------------------------------------------------------
def parse_tasks(text: str) -> list[int]:
    ns = [int(t) for t in text.split(",") if t.strip()]
    if not ns or min(ns) < 1:
        raise argparse.ArgumentTypeError(f"--tasks: positive counts, comma-separated (got {text!r})")
    return ns


def application_spec(opts: argparse.Namespace, code_zip: Path) -> Any:
    import skein

    args = (f"--in-container --tasks {opts.tasks} --processes {opts.processes} --warmup {opts.warmup} "
            f"--barrier-timeout {opts.barrier_timeout} --poll-s {opts.poll_s}")
    service = skein.Service(
        resources=skein.Resources(memory=opts.memory, vcores=1),
        instances=1,
        files={CODE_LINK: skein.File(source=str(code_zip), type="archive"),
               SCRIPT: skein.File(source=str(Path(__file__).resolve()))},
        env={"PYTHONPATH": f"{CODE_LINK}:.", "PYTHONUNBUFFERED": "1", "PYTHONDONTWRITEBYTECODE": "1"},
        script=f"exec {sys.executable} {SCRIPT} {args}",
    )
    return skein.ApplicationSpec(
        name="tfoy-bench-barrier-scale",
        queue=opts.queue,
        tags={"tfoy", "benchmark"},
        services={"bench": service},
        master=skein.Master(resources=skein.Resources(memory=512, vcores=1)),
        max_attempts=1,
    )


def is_final(client: Any, app_id: str) -> bool:
    return str(client.application_report(app_id).state) in ("FINISHED", "FAILED", "KILLED")


def submit_and_collect(opts: argparse.Namespace) -> list[dict[str, Any]]:
    import skein

    from yarn_app.code_zip import build_code_zip

    ns = parse_tasks(opts.tasks)
    with tempfile.TemporaryDirectory(prefix="tfoy-bench-barrier-") as tmp, skein.Client() as client:
        code_zip = build_code_zip(Path(tmp) / "tfoy_code.zip", opts.code_root)
        app_id = client.submit(application_spec(opts, code_zip))
        log.info("submitted %s", app_id)
        try:
            app = client.connect(app_id)  # waits until the AM runs
            results: list[dict[str, Any]] = []
            deadline = time.monotonic() + opts.timeout
            while len(results) < len(ns):
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{len(results)} of {len(ns)} rounds within {opts.timeout}s")
                if is_final(client, app_id):
                    raise RuntimeError(f"{app_id} ended early: {client.application_report(app_id).diagnostics}")
                error = app.kv.get(ERROR_KEY)
                if error is not None:
                    raise RuntimeError(f"benchmark failed in the container:\n{error.decode()}")
                while len(results) < len(ns) and (raw := app.kv.get(result_key(len(results)))) is not None:
                    results.append(json.loads(raw))
                    log.info("N=%d: %.2f s", results[-1]["tasks"], results[-1]["seconds"])
                time.sleep(0.5)
            app.kv.put(RELEASE_KEY, b"1")
            end = time.monotonic() + 60
            while not is_final(client, app_id) and time.monotonic() < end:
                time.sleep(1)
        finally:
            if not is_final(client, app_id):
                log.info("killing %s", app_id)
                client.kill_application(app_id)
    return results


def print_table(rows: list[dict[str, Any]]) -> None:
    print(f"{'N':>5} {'seconds':>8} {'s/task':>8} {'claim_s':>8} {'reg→spec':>8} {'kv_ops':>8} {'ops/task':>8} "
          f"{'claim_ops':>9}  kv calls")
    for r in rows:
        n = r["tasks"]
        calls = ", ".join(f"{k}={v}" for k, v in sorted(r["kv_calls"].items()))
        print(f"{n:>5} {r['seconds']:>8.2f} {r['seconds'] / n:>8.4f} {r['claim_s']:>8.2f} "
              f"{r['register_to_spec_s']:>8.2f} {r['kv_ops']:>8} {r['kv_ops'] / n:>8.1f} {r['claim_ops']:>9}  {calls}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tasks", default="16,64,256", help="comma-separated task counts, one round each")
    p.add_argument("--processes", type=int, default=4, help="processes the simulated tasks are spread over")
    p.add_argument("--warmup", type=int, default=4, help="tasks in an unreported first round (0: none)")
    p.add_argument("--barrier-timeout", type=float, default=300, help="wait_for_peers timeout per task")
    p.add_argument("--poll-s", type=float, default=0.0,
                   help="override tfnode.yarn.barrier.POLL_S in the container, to see its effect (0: keep it)")
    p.add_argument("--memory", type=int, default=1024, help="MiB of the benchmark container")
    p.add_argument("--queue", default="default")
    p.add_argument("--timeout", type=float, default=900, help="seconds for the whole application")
    p.add_argument("--code-root", type=Path, default=None,
                   help="ship tfnode & co. from this folder instead of this checkout (to compare versions)")
    p.add_argument("--in-container", action="store_true", help=argparse.SUPPRESS)
    opts = p.parse_args(argv)
    parse_tasks(opts.tasks)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if opts.in_container:
        return container_main(opts)
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # yarn_app, when run from a checkout
    rows = submit_and_collect(opts)
    print_table(rows)
    last = max(reversed(rows), key=lambda r: r["tasks"])  # the largest N (its last round, if repeated)
    print(f"RESULT tasks={last['tasks']} seconds={last['seconds']:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
