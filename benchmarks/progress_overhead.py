"""What progress reporting costs the demo's training: the same `model.fit` with and without tfoy's callback.

    python benchmarks/progress_overhead.py [--repeats 5] [--records 12000] [--epochs 2]

The demo's model (examples/mnist/model.py) on Fashion-MNIST images from the Debian package, batch 64, in this
process: runs alternate between plain `model.fit` and `model.fit` with the TfoyProgress callback tfoy adds in
every task, reporting into a file sink as in a YARN container (the supervisor that copies the file to the
key-value store is another process and not on the training path). The overhead is the median of the paired
ratios (each run with reporting over the plain run just before it), as benchmarks/hdfs_read.py pairs its runs.
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
    parser.add_argument("--repeats", type=int, default=5)
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
        progress.install(reporter)  # what prepare_node does in a task: every fit gets the callback

        def run(report: bool) -> float:
            keras.utils.set_random_seed(0)
            model = build_cnn()
            fit = model.fit if report else model.fit.__wrapped__.__get__(model)  # the unwrapped fit: no callback
            start = time.perf_counter()
            fit(x, y, batch_size=64, epochs=args.epochs, verbose=0)
            return time.perf_counter() - start

        run(False)  # warm-up: tracing, kernels
        plain, reported = [], []
        for _ in range(args.repeats):
            plain.append(run(False))
            reported.append(run(True))
        sent = progress.read_snapshot(Path(folder) / "progress.json")
    overhead = 100 * (statistics.median(r / p for r, p in zip(reported, plain, strict=True)) - 1)
    print(f"{args.records} images x {args.epochs} epochs, batch 64: plain {statistics.median(plain):.2f}s, with "
          f"progress {statistics.median(reported):.2f}s (medians of {args.repeats}); last report: "
          f"{progress.describe(sent)}")
    print(f"RESULT progress_overhead_pct={overhead:.2f}")


if __name__ == "__main__":
    main()
