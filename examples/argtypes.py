"""argparse types the examples share: a count below its minimum is refused by the parser, naming the option, before
anything is read, trained or written (`--epochs 0` used to export an untrained model as a new version, and
`--train-records 0` made an epoch that never ended)."""

from __future__ import annotations

import argparse
from collections.abc import Callable


def at_least(minimum: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be >= {minimum}, got {value}")
        return value

    return parse
