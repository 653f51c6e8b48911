"""The argument types the ``kedit`` subcommands share: argparse ``type`` functions whose errors
argparse reports in its one-line form."""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable


def int_at_least(minimum: int) -> Callable[[str], int]:
    """An argparse ``type`` reading a whole number of at least ``minimum``."""

    def read(text: str) -> int:
        value = int(text)
        if value < minimum:
            raise argparse.ArgumentTypeError(f"expected a whole number of at least {minimum}, got {text}")
        return value

    read.__name__ = f"integer >= {minimum}"  # argparse names the type in its "invalid ... value" message
    return read


def positive_number(text: str) -> float:
    """An argparse ``type`` reading a finite number greater than 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"expected a finite number greater than 0, got {text}")
    return value
