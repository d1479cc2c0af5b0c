"""How far a task is: phase, epoch/step, latest loss and metrics, steps/s, memory — for people and for the watchdog.

A `Reporter` lives in the TF process. It is fed by a Keras callback that tfoy adds to every `model.fit` (Keras 3
and tf-keras; `install`) and by the user's own `ctx.report(**metrics)`, and hands a snapshot (a small JSON dict)
to a sink at most every `every_s` seconds — at once when the phase or the epoch changes, so epoch ends are never
lost to the rate limit. Sinks: in a YARN container a file in the working folder (`FileSink`), replaced by rename,
which the supervisor copies into the skein key-value store (it already holds a skein client; the TF process has
none) and watches for the stall watchdog; in Spark mode the node's control connection to the driver, which logs
it. Metrics that are not numbers are dropped with one warning each: a report never fails training.
"""

from __future__ import annotations

import json
import logging
import math
import operator
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

from hdfs_io.import_hooks import when_imported

log = logging.getLogger(__name__)

PROGRESS_ENV = "TFOY_PROGRESS"  # the file a YARN task's TF process reports into (set by the supervisor)
REPORT_EVERY_S = 2.0
MAX_EPOCHS_KEPT = 500  # epoch-end metrics kept for history (a plot), oldest dropped beyond


def rss_mb() -> float | None:
    """Resident memory of this process (Linux), MB."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    return None


class Reporter:
    """Collects progress and forwards snapshots to `sink`, rate-limited; thread-safe (Keras and the user's thread)."""

    def __init__(self, sink: Callable[[dict[str, Any]], None], every_s: float = REPORT_EVERY_S,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._sink = sink
        self._every = every_s
        self._clock = clock
        self._lock = threading.Lock()
        self._last_sent = -math.inf
        self._warned: set[str] = set()
        self._step_times: tuple[float, int] | None = None  # (time, step) of the last rate sample
        self.state: dict[str, Any] = {"phase": "running", "epoch": None, "epochs": None, "step": None,
                                      "metrics": {}, "history": [], "seq": 0}

    def _numbers(self, metrics: dict[str, Any]) -> dict[str, float | str]:
        out: dict[str, float | str] = {}
        for name, value in metrics.items():
            try:
                number = float(value)
            except (TypeError, ValueError):
                if name not in self._warned:
                    self._warned.add(name)
                    log.warning("progress: metric %r is %r, not a number; dropped (training is unaffected)", name,
                                value)
                continue
            out[name] = number if math.isfinite(number) else str(number)  # a nan loss is news: kept, as JSON can
        return out

    def _count(self, name: str, value: Any) -> int | None:
        """epoch/epochs/step as a Python int (a numpy int64 from the user's loop included): anything else kept in
        the state would fail every later snapshot's JSON, so it is dropped with one warning."""
        if value is None:
            return None
        try:
            if isinstance(value, bool):
                raise TypeError
            return operator.index(value)
        except TypeError:
            if name not in self._warned:
                self._warned.add(name)
                log.warning("progress: %s %r is not a whole number; dropped (training is unaffected)", name, value)
            return None

    def report(self, phase: str | None = None, epoch: int | None = None, epochs: int | None = None,
               step: int | None = None, epoch_end: bool = False, force: bool = False, **metrics: Any) -> None:
        epoch, epochs, step = (self._count(k, v) for k, v in (("epoch", epoch), ("epochs", epochs), ("step", step)))
        phase = None if phase is None else str(phase)
        with self._lock:
            s = self.state
            urgent = force or epoch_end or (phase is not None and phase != s["phase"]) or \
                (epoch is not None and epoch != s["epoch"])
            if phase is not None:
                s["phase"] = phase
            if epochs is not None:
                s["epochs"] = epochs
            if epoch is not None:
                s["epoch"] = epoch
            if step is not None:
                now = self._clock()
                if self._step_times is not None and step > self._step_times[1] and now > self._step_times[0]:
                    s["steps_per_s"] = round((step - self._step_times[1]) / (now - self._step_times[0]), 2)
                if self._step_times is None or now - self._step_times[0] >= self._every or step < self._step_times[1]:
                    self._step_times = (now, step)
                s["step"] = step
            numbers = self._numbers(metrics)
            s["metrics"].update(numbers)
            if epoch_end:
                s["history"].append({"epoch": s["epoch"], **numbers})
                del s["history"][:-MAX_EPOCHS_KEPT]
            now = self._clock()
            if not urgent and now - self._last_sent < self._every:
                return
            self._last_sent = now
            s["seq"] += 1
            s["time"] = time.time()
            s["rss_mb"] = rss_mb()
            snapshot = json.loads(json.dumps(s))  # plain ints, floats and strings only: see _count and _numbers
        try:
            self._sink(snapshot)
        except Exception as e:  # noqa: BLE001 - progress must never fail training
            log.debug("progress sink failed: %s", e)


class FileSink:
    """Writes each snapshot to `path` by rename, so the supervisor never reads half a file."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)

    def __call__(self, snapshot: dict[str, Any]) -> None:
        tmp = self.path.with_name(f".{self.path.name}.tmp")
        tmp.write_text(json.dumps(snapshot))
        tmp.replace(self.path)


def read_snapshot(path: str | os.PathLike) -> dict[str, Any] | None:
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None


# ---- the Keras callback tfoy adds to model.fit ---------------------------------------------------------------------
def _callback_classes(callback_base: type, reporter: Reporter) -> tuple[type, type]:
    """(the callback, its epoch-level twin): ParameterServerStrategy's fit (tf-keras) refuses callbacks with batch
    hooks, so there only epochs are reported."""

    class TfoyProgressEpochs(callback_base):  # type: ignore[misc, valid-type]
        """Reports the epoch, loss and metrics to tfoy (added to every model.fit by tfoy)."""

        def on_train_begin(self, logs: Any = None) -> None:
            reporter.report(phase="training", epochs=(self.params or {}).get("epochs"))

        def on_epoch_begin(self, epoch: int, logs: Any = None) -> None:
            reporter.report(epoch=epoch + 1)

        def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
            reporter.report(epoch=epoch + 1, epoch_end=True, **(logs or {}))

        def on_train_end(self, logs: Any = None) -> None:
            reporter.report(phase="trained", force=True)

    class TfoyProgress(TfoyProgressEpochs):
        """Reports epoch, step, loss and metrics to tfoy (added to every model.fit by tfoy)."""

        def on_train_batch_end(self, batch: int, logs: Any = None) -> None:
            reporter.report(step=batch + 1, **(logs or {}))

    return TfoyProgress, TfoyProgressEpochs


def _patch_fit(keras: ModuleType, reporter: Reporter) -> None:
    """Wraps `keras.Model.fit` so that its callbacks include a TfoyProgress (unless the user added one)."""
    model_class = getattr(keras, "Model", None)
    callbacks = getattr(keras, "callbacks", None)
    if model_class is None or callbacks is None or getattr(model_class.fit, "_tfoy_progress", False):
        return
    per_batch, per_epoch = _callback_classes(callbacks.Callback, reporter)
    original = model_class.fit

    def fit(self: Any, *args: Any, **kwargs: Any) -> Any:
        if len(args) <= 5:  # fit(x, y, batch_size, epochs, verbose, callbacks, ...): callbacks not positional
            given = list(kwargs.get("callbacks") or [])
            if not any(type(c).__name__.startswith("TfoyProgress") for c in given):
                coordinated = getattr(getattr(self, "distribute_strategy", None), "_should_use_with_coordinator",
                                      False)
                kwargs["callbacks"] = [*given, per_epoch() if coordinated else per_batch()]
        return original(self, *args, **kwargs)

    fit.__doc__, fit.__wrapped__, fit._tfoy_progress = original.__doc__, original, True  # type: ignore[attr-defined]
    model_class.fit = fit


def install(reporter: Reporter) -> None:
    """Adds the progress callback to `model.fit` of Keras 3 and of tf-keras, when (or if already) imported."""
    for name in ("keras", "tf_keras"):
        when_imported(name, lambda module, r=reporter: _patch_fit(module, r))


def describe(snapshot: dict[str, Any] | None) -> str:
    """One line for people: `training epoch 2/5 step 120 loss 0.512 accuracy 0.830 12.3 steps/s 812 MB`."""
    if not snapshot:
        return ""
    parts = [str(snapshot.get("phase") or "")]
    if snapshot.get("epoch") is not None:
        parts.append(f"epoch {snapshot['epoch']}" + (f"/{snapshot['epochs']}" if snapshot.get("epochs") else ""))
    if snapshot.get("step") is not None:
        parts.append(f"step {snapshot['step']}")
    metrics = snapshot.get("metrics") or {}
    for name in sorted(metrics, key=lambda n: (n != "loss", n.startswith("val_"))):  # loss first, val_* last
        value = metrics[name]
        parts.append(f"{name} {value:.4g}" if isinstance(value, float) else f"{name} {value}")
    if snapshot.get("steps_per_s"):
        parts.append(f"{snapshot['steps_per_s']:g} steps/s")
    if snapshot.get("rss_mb"):
        parts.append(f"{snapshot['rss_mb']:.0f} MB")
    return " ".join(p for p in parts if p)


class ControlSink:
    """Spark mode: snapshots to the driver over the node's control connection (the driver logs them); dropped
    until the node has registered."""

    def __init__(self) -> None:
        self.client: Any = None

    def __call__(self, snapshot: dict[str, Any]) -> None:
        if self.client is not None:
            self.client.send({"op": "progress", "progress": snapshot})
