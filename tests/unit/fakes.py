"""Fakes more than one unit test file needs."""

from __future__ import annotations


class ManualClock:
    """A `clock=` for code that reads the time: it stands still until the test moves `now`."""

    def __init__(self, now: float = 0.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now
