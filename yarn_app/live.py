"""What `tfoy submit` shows of each task while it waits: phase, epoch, loss and metrics, steps/s, memory.

On a terminal: one live line per task (rich's Live table, redrawn in place). Piped (Airflow, Oozie, a log file):
plain lines, one per task whenever its phase or epoch changes and otherwise at most every PIPE_EVERY_S, so a
scheduler's log shows a healthy job moving without being flooded.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import Any

from tfnode import progress

PIPE_EVERY_S = 30.0


def task_phase(task: Any) -> str:
    """The phase people read: the supervisor's state until the TF process runs, then what the TF process says."""
    state = {"starting": "starting", "waiting": "barrier", "waiting-for-restart": "restarting",
             "succeeded": "done", "failed": "failed"}.get(task.state, task.state)
    if task.state == "running" and task.progress:
        return task.progress.get("phase") or "running"
    return state


def task_line(task: Any) -> str:
    detail = progress.describe(dict(task.progress, phase=None)) if task.progress else ""
    return f"{task.name:12s} {task_phase(task):10s} {detail}".rstrip()


class PlainView:
    """Progress lines for pipes: a task's line when its phase/epoch changed, else at most every `every_s`."""

    def __init__(self, out: Callable[[str], None], every_s: float = PIPE_EVERY_S,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.out, self.every_s, self.clock = out, every_s, clock
        self._shown: dict[str, tuple[Any, float, Any]] = {}  # task → ((phase, epoch), when, seq)

    def update(self, prog: Any, elapsed: float) -> None:
        now = self.clock()
        for name, task in prog.tasks.items():
            snap = task.progress or {}
            key = (task_phase(task), snap.get("epoch"))
            seen = self._shown.get(name)
            changed = seen is None or seen[0] != key
            if not changed and (snap.get("seq") == seen[2] or now - seen[1] < self.every_s):
                continue
            self._shown[name] = (key, now, snap.get("seq"))
            if snap or changed:
                self.out(f"[{elapsed:5.0f}s] {task_line(task)}")

    def close(self) -> None:
        pass


class TerminalView:
    """One live line per task on a terminal (rich), above which event lines (failures) still print."""

    def __init__(self) -> None:
        from rich.console import Console
        from rich.live import Live

        self.console = Console()
        self.live = Live(console=self.console, refresh_per_second=2, transient=False)
        self.live.start()

    def update(self, prog: Any, elapsed: float) -> None:
        from rich.table import Table
        from rich.text import Text

        table = Table(box=None, show_header=False, pad_edge=False)
        table.add_row(Text.assemble((prog.app_id, "bold"), f" {prog.state} {elapsed:.0f}s"))
        for task in prog.tasks.values():  # Text: a metric named `val[/x]` is shown, not read as rich markup
            table.add_row(Text(task_line(task)), style="red" if task.state == "failed" else None)
        self.live.update(table)

    def close(self) -> None:
        self.live.stop()


def view_for(out: Callable[[str], None], default_out: Callable[[str], None]) -> PlainView | TerminalView:
    """The live table when output goes to the process's own terminal; plain lines for pipes and for callers that
    take the lines themselves (the Airflow operator)."""
    if out is default_out and sys.stdout.isatty():
        return TerminalView()
    return PlainView(out)
