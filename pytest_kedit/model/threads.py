"""The CPU threads of torch's operators, pinned to one for a while.

A matrix product splits its sums over the threads it has, so the same edit made with one thread
and with two gives weights that differ in their last bits. For one edit that is float noise; a
stream of edits builds each edit on the weights the last ones left, and the noise grows until
whole metrics differ between a serial run and one under pytest-xdist. A learned update of large
gain (MEND's network) grows it within the two edits of one case. Such edits therefore run on one
thread: then their weights are the same in every thread layout of one machine (the probes keep
every thread: their noise does not accumulate).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch


@contextmanager
def one_thread() -> Iterator[None]:
    """Run the block with ``torch.set_num_threads(1)``; the thread count before it is put back."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)
