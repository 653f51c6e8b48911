"""The CPU threads of torch's operators, pinned for a while.

A matrix product splits its sums over the threads it has, so the same computation made with one
thread and with two gives results that differ in their last bits. Two kinds of work must not
depend on that:

- Edits that build on each other. For one edit the difference is float noise; a stream of edits
  builds each edit on the weights the last ones left, and the noise grows until whole metrics
  differ between a serial run and one under pytest-xdist. A learned update of large gain (MEND's
  network) grows it within the two edits of one case. Such edits run on :func:`one_thread`: then
  their weights are the same in every thread layout of one machine (the probes keep every thread:
  their noise does not accumulate).
- What the cache keeps for every later run: the context templates, the corpus sampled from the
  model and its second moments. A sampled token follows a draw, and last-bit noise moves a draw
  now and then (one window of SmolLM2's 200 differs between one thread and two), which moves the
  statistics and the locate-and-edit results (ROME's: by up to 0.014 on a paper case, 0.07 on
  its stream). Whichever process builds them (a serial run, or an xdist worker with one thread),
  they are built on :func:`build_threads`.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager

import torch

#: Threads the cached templates, sampled corpus and second moments are built on: those of the
#: shipped baselines' caches (a serial run on 2 cores).
BUILD_THREADS = 2


@contextmanager
def threads(count: int) -> Iterator[None]:
    """Run the block with ``torch.set_num_threads(count)``; the thread count before it is put back."""
    before = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def one_thread() -> AbstractContextManager[None]:
    """:func:`threads` with one thread."""
    return threads(1)


def build_threads() -> AbstractContextManager[None]:
    """:func:`threads` with :data:`BUILD_THREADS` (read at the call)."""
    return threads(BUILD_THREADS)
