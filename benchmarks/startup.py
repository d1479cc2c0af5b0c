"""Start-up latency of a YARN job: seconds from `tfoy submit` to every task inside the user function.

Runs a chief + 2 workers job 3 times on the cluster named by HADOOP_CONF_DIR and prints the median. The user
function is `task_main` below (this file is shipped with the job): it records on HDFS when it was entered, and
when `import tensorflow` had finished (reported as tf_ready_s, for scale). By default the job uses the shipped
env archive: private by default (cached on HDFS, localized again by every application), `--shared-env` a
world-readable one (in the NodeManager's PUBLIC cache after the first job: the first run pays the unpacking);
`--installed-python` uses this interpreter on the nodes instead.

Last line: `RESULT startup_s=<median>`.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path


def task_main(args: list[str], ctx) -> None:
    entered = time.time()
    import tensorflow as tf  # noqa: F401  (what a real job does first)

    tf_ready = time.time()
    from hdfs_io import fs

    fs.write_bytes(f"{args[0]}/{ctx.job_name}-{ctx.task_index}.json",
                   json.dumps({"entered": entered, "tf_ready": tf_ready}).encode())


def run_once(base: str, installed_python: bool, shared: bool, workdir: Path) -> tuple[float, float]:
    import yaml

    from hdfs_io import fs

    out = f"{base}/{uuid.uuid4().hex[:8]}"
    fs.makedirs(out)
    spec = {
        "name": "tfoy-bench-startup",
        "entry_point": "startup:task_main",
        "args": [out],
        "files": {"startup.py": str(Path(__file__).resolve())},
        "roles": {"chief": {"memory": 1024}, "worker": {"instances": 2, "memory": 1024}},
        "python_env": {"python": sys.executable} if installed_python else {"archive": "auto", "shared": shared},
        "timeouts": {"allocation": 300, "barrier": 300, "job": 600},
    }
    path = workdir / "startup.yaml"
    path.write_text(yaml.safe_dump(spec))
    tfoy = str(Path(sys.executable).parent / "tfoy")
    t0 = time.time()
    proc = subprocess.run([tfoy, "submit", str(path)], capture_output=True, text=True, timeout=900)
    if proc.returncode != 0:
        raise SystemExit(f"job failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    marks = [json.loads(fs.read_bytes(f.uri)) for f in fs.ls(out)]
    if len(marks) != 3:
        raise SystemExit(f"expected 3 tasks, got {len(marks)}")
    return max(m["entered"] for m in marks) - t0, max(m["tf_ready"] for m in marks) - t0


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--installed-python", action="store_true", help="use this Python on the nodes, no archive")
    p.add_argument("--shared-env", action="store_true", help="a world-readable env archive (PUBLIC localization)")
    opts = p.parse_args()
    from hdfs_io import fs

    base = f"/tmp/tfoy-bench/startup-{uuid.uuid4().hex[:8]}"
    workdir = Path(f"/tmp/tfoy-bench-{uuid.uuid4().hex[:8]}")
    workdir.mkdir(parents=True)
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    try:
        results = []
        for i in range(opts.runs):
            startup, tf_ready = run_once(base, opts.installed_python, opts.shared_env, workdir)
            results.append((startup, tf_ready))
            print(f"run {i + 1}: all tasks in the user function after {startup:.1f}s, TensorFlow imported after "
                  f"{tf_ready:.1f}s", flush=True)
    finally:
        fs.delete(base, recursive=True)
    print(f"median tf_ready_s={statistics.median(r[1] for r in results):.1f}")
    print(f"RESULT startup_s={statistics.median(r[0] for r in results):.1f}")


if __name__ == "__main__":
    main()
