"""Wall seconds per phase of a piece of work: a case's edits, probes and restores; a training's passes."""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager


class PhaseTimer:
    """Sums the wall seconds of every ``with timer(phase):`` block by phase in :attr:`seconds`;
    the ``phases`` given start at 0, any other appears when its first block ends."""

    def __init__(self, phases: Iterable[str] = ()) -> None:
        self.seconds: dict[str, float] = dict.fromkeys(phases, 0.0)

    @contextmanager
    def __call__(self, phase: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[phase] = self.seconds.get(phase, 0.0) + (time.perf_counter() - start)
