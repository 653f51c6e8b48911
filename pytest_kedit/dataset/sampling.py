"""Stratified samples of a split's cases (``--kedit-sample N``).

A sample is computed from the data alone: the cases' strata (their relations), N and the seed.
Every process that reads the same file draws the same sample, so pytest-xdist workers agree,
and a split's sample does not depend on the other splits.

Allocation: stratum k of size s_k out of S cases has the quota q_k = N·s_k/S. When N is at
least the number of strata, every stratum gets at least one case: strata whose quota is below
one get exactly one, and the others share the remaining cases in proportion to their sizes
(repeated until no share is below one). The shares are divided by largest remainder: each
stratum gets the floor of its share, and the cases left over go to the largest remainders
(ties in a seeded order). Within a stratum the cases are a uniform draw without replacement.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence

from pytest_kedit.benchmark.cases import Case, ConflictCase, StreamCase


def stratum(case: Case) -> str:
    """The stratum of a case: the relation of e1 (ConflictEdit) or of the edit (RoundEdit); every
    stream is in the one stratum of its group (:attr:`~pytest_kedit.benchmark.cases.StreamCase.relation_group`)."""
    if isinstance(case, StreamCase):
        return case.relation_group
    return case.edits[0].relation.id if isinstance(case, ConflictCase) else case.edit.relation.id


def stratified_sample(keys: Sequence[str], n: int, seed: int) -> list[int]:
    """Sorted indices into ``keys`` of a sample of ``min(n, len(keys))`` items, stratified by key.

    ``keys[i]`` is item i's stratum. Stratum k gets ``allocation(sizes, n, rng)[k]`` of its
    items, drawn uniformly without replacement. The result depends only on ``keys``, ``n`` and
    ``seed`` (``random.Random(seed)``, used in a fixed order). ``n >= len(keys)`` returns every
    index. Raises ValueError if ``n < 0``.
    """
    if n < 0:
        raise ValueError(f"sample size must be at least 0, got {n}")
    if n >= len(keys):
        return list(range(len(keys)))
    members: dict[str, list[int]] = {}
    for index, key in enumerate(keys):
        members.setdefault(key, []).append(index)
    rng = random.Random(seed)
    counts = allocation({key: len(items) for key, items in members.items()}, n, rng)
    chosen = [index for key in sorted(members) for index in rng.sample(members[key], counts[key])]
    return sorted(chosen)


def allocation(sizes: Mapping[str, int], n: int, rng: random.Random) -> dict[str, int]:
    """How many of its ``sizes[k]`` items each stratum k gives to a sample of ``n``.

    With S = sum of sizes and q_k = n·sizes[k]/S the quota of stratum k:

    - ``n >= S``: every item (the counts are the sizes).
    - ``n < number of strata``: largest remainder over the quotas, so each count is the floor
      or the ceiling of its quota, and a count is 0 only if its quota is below one.
    - otherwise every count is at least 1 and at most the ceiling of its quota; a stratum with
      a larger size never gets fewer; and when every quota is at least one, each count is the
      floor or the ceiling of its quota (plain largest remainder).

    Counts add up to ``min(n, S)``. ``rng`` orders strata with equal remainders (it is called
    once, for a shuffle of the sorted keys). Sizes must be positive.
    """
    total = sum(sizes.values())
    if n >= total:
        return dict(sizes)
    ties = sorted(sizes)
    rng.shuffle(ties)
    singles: set[str] = set()
    if n >= len(sizes):
        while True:
            rest = {key: size for key, size in sizes.items() if key not in singles}
            seats, weight = n - len(singles), sum(rest.values())
            small = {key for key, size in rest.items() if size * seats < weight}
            if not small:
                break
            singles |= small
    rest = {key: size for key, size in sizes.items() if key not in singles}
    shares = largest_remainder(rest, n - len(singles), {key: rank for rank, key in enumerate(ties)})
    return {key: 1 if key in singles else shares[key] for key in sizes}


def largest_remainder(sizes: Mapping[str, int], seats: int, tie_rank: Mapping[str, int]) -> dict[str, int]:
    """Hamilton's method: ``seats`` divided in proportion to ``sizes``, in exact integers.

    Each key gets the floor of ``seats·size/total``; the seats left (fewer than the number of
    keys) go one each to the keys with the largest remainders, equal remainders in increasing
    ``tie_rank``. Counts add up to ``seats``.
    """
    total = sum(sizes.values())
    shares = {key: seats * size // total for key, size in sizes.items()}
    left = seats - sum(shares.values())
    by_remainder = sorted(sizes, key=lambda key: (-(seats * sizes[key] % total), tie_rank[key]))
    for key in by_remainder[:left]:
        shares[key] += 1
    return shares
