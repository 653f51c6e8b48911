"""Shards: a run split over N jobs (``--kedit-shard=K/N``).

Dealing: within each split, the entries are ordered by (relation, case id) and dealt round-robin,
the i-th of them (from 0) to shard ``i mod N + 1``. So the N shards partition the split, their
sizes differ by at most one, and within each relation too (a relation is a run of consecutive
entries, dealt like the whole). A shard depends only on the split's entries, K and N: every
process reading the same data gets the same shard, and shards of one split do not depend on the
other splits. Shards are dealt after ``--kedit-limit`` and ``--kedit-sample`` have chosen the
entries.
Merging the N report folders back is :mod:`pytest_kedit.results.shard_merge`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from pytest_kedit.errors import ConfigError

SHARD_PATTERN = re.compile(r"\s*(\d+)\s*/\s*(\d+)\s*")


@dataclass(frozen=True, order=True)
class Shard:
    """Shard ``index`` (from 1) of ``count``."""

    index: int
    count: int

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


def parse_shard(text: str) -> Shard:
    """``"2/3"`` -> ``Shard(2, 3)``; anything but K/N with 1 <= K <= N raises ConfigError naming
    ``--kedit-shard``."""
    match = SHARD_PATTERN.fullmatch(text)
    if match is None:
        raise ConfigError(f"--kedit-shard: {text!r} is not K/N (e.g. 2/3: the second of three shards)")
    index, count = int(match[1]), int(match[2])
    if not 1 <= index <= count:
        raise ConfigError(f"--kedit-shard: {text!r} needs 1 <= K <= N")
    return Shard(index, count)


def deal(keys: Sequence[tuple[str, str]], shard: Shard) -> list[int]:
    """The positions in ``keys`` (one ``(relation, case id)`` per entry of a split) that ``shard``
    gets, in increasing order: the entries sorted by key (ties by position), the i-th of them
    (from 0) to shard ``i mod count + 1``."""
    order = sorted(range(len(keys)), key=lambda position: (keys[position], position))
    return sorted(position for rank, position in enumerate(order) if rank % shard.count == shard.index - 1)
