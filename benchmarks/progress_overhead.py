"""What progress reporting costs the demo's training: the same `model.fit` with and without tfoy's callback.

    python benchmarks/progress_overhead.py [--repeats 5] [--records 12000] [--epochs 2]

The demo's model (examples/mnist/model.py) on Fashion-MNIST images from the Debian package, batch 64, in this
process: runs alternate between plain `model.fit` and `model.fit` with the TfoyProgress callback tfoy adds in
every task, reporting into a file sink as in a YARN container (the supervisor that copies the file to the
key-value store is another process and not on the training path). The overhead is the median of the paired
ratios (each run with reporting over the plain run beside it; pairs alternate which runs first).
The overhead is the time spent in the callback's reports over the training time with
reporting (the paired wall-time difference is printed too, but run-to-run noise on this machine is a few %).
Last line: RESULT progress_overhead_pct=…
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=6)
    parser.add_argument("--records", type=int, default=12000)
    parser.add_argument("--epochs", type=int, default=2)
    args = parser.parse_args()
    import keras

    from examples.mnist.idx import load_split
    from examples.mnist.model import build_cnn
    from tfnode import progress

    images, labels = load_split("train")
    x, y = images[: args.records].astype("float32"), labels[: args.records].astype("int64")
    with tempfile.TemporaryDirectory(prefix="tfoy-progress-bench-") as folder:
        reporter = progress.Reporter(progress.FileSink(Path(folder) / "progress.json"))
        inside = [0.0, 0]  # seconds spent in the callback's reports, calls
        untimed = reporter.report

        def timed_report(*a, **kw):
            t = time.perf_counter()
            untimed(*a, **kw)
            inside[0] += time.perf_counter() - t
            inside[1] += 1

        reporter.report = timed_report
        progress.install(reporter)  # what prepare_node does in a task: every fit gets the callback

        def run(report: bool) -> float:
            keras.utils.set_random_seed(0)
            model = build_cnn()
            fit = model.fit if report else model.fit.__wrapped__.__get__(model)  # the unwrapped fit: no callback
            start = time.perf_counter()
            fit(x, y, batch_size=64, epochs=args.epochs, verbose=0)
            return time.perf_counter() - start

        run(False)  # warm-up: tracing, kernels
        run(True)
        plain, reported = [], []
        inside[:] = [0.0, 0]
        for i in range(args.repeats):  # ABBA order, so that neither side always runs second
            for report in ((False, True) if i % 2 == 0 else (True, False)):
                (reported if report else plain).append(run(report))
        sent = progress.read_snapshot(Path(folder) / "progress.json")
    wall = 100 * (statistics.median(r / p for r, p in zip(reported, plain, strict=True)) - 1)
    overhead = 100 * inside[0] / sum(reported)  # the callback's own time: what the noise of wall times hides
    print(f"{args.records} images x {args.epochs} epochs, batch 64: plain {statistics.median(plain):.2f}s, with "
          f"progress {statistics.median(reported):.2f}s (medians of {args.repeats}); last report: "
          f"{progress.describe(sent)}")
    print("runs plain: " + " ".join(f"{t:.2f}" for t in plain) + "; with progress: "
          + " ".join(f"{t:.2f}" for t in reported))
    print(f"in the callback: {inside[0]:.3f}s over {inside[1]} reports in {sum(reported):.1f}s of training with "
          f"progress ({1e6 * inside[0] / max(inside[1], 1):.0f} us each); wall-time paired difference {wall:+.1f}% "
          "(run-to-run noise here is a few %)")
    print(f"RESULT progress_overhead_pct={overhead:.2f}")


if __name__ == "__main__":
    main()
