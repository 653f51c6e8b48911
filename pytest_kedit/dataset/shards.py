"""Shards: a run split over N jobs (``--kedit-shard=K/N``), and the N report folders merged back.

Dealing: within each split, the entries are ordered by (relation, case id) and dealt round-robin,
the i-th of them (from 0) to shard ``i mod N + 1``. So the N shards partition the split, their
sizes differ by at most one, and within each relation too (a relation is a run of consecutive
entries, dealt like the whole). A shard depends only on the split's entries, K and N: every
process reading the same data gets the same shard, and shards of one split do not depend on the
other splits. Shards are dealt after ``--kedit-limit`` and ``--kedit-sample`` have chosen the
entries.

Merging: the report folders of the N shards of one model × method become one run whose records
are the union of theirs (:func:`merge_shards`): their provenance (:mod:`pytest_kedit.results.provenance`)
must be equal and no case may be in two of them. A shard that is missing leaves a run marked
partial (``complete`` false), never an error: the tables of what finished are still printed.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pytest_kedit.errors import ConfigError, KeditError
from pytest_kedit.results.provenance import provenance, provenance_difference
from pytest_kedit.results.record import CaseRecord, outcome_counts

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


def is_shard(summary: Mapping[str, Any]) -> bool:
    """Whether a run summary is that of one shard (its ``shard`` is ``"K/N"``)."""
    return bool(summary.get("shard"))


def merge_shards(runs: Sequence[tuple[str, Mapping[str, Any], list[CaseRecord]]]) -> tuple[dict[str, Any], list[CaseRecord]]:
    """One run from the shard runs ``(folder, summary, records)`` of one model × method.

    Raises KeditError, naming the folders, when a run is not a shard, the shards were not split
    in the same number N, two runs are the same shard, their provenance differs (the field, as
    :func:`~pytest_kedit.results.provenance.provenance_difference` names it), or a case is in two of them.
    The merged summary is the first shard's, with ``shard`` null, ``shards`` the shards merged
    (``"1/3"``, ...) and ``shards_missing`` the others, ``complete`` true only when every shard
    is there and finished, ``cases_expected`` / ``cases_done`` and the numeric ``timings`` summed.
    """
    if not runs:
        raise KeditError("no shard runs to merge")
    shards = []
    for folder, summary, _ in runs:
        if not is_shard(summary):
            raise KeditError(f"{folder}: not a shard (its summary.json has no 'shard'), but other runs of "
                             f"{summary['model']} / {summary['method']} are shards; merge shards only with shards")
        try:
            shards.append(parse_shard(str(summary["shard"])))
        except ConfigError:
            raise KeditError(f"{folder}: summary.json field 'shard' is {summary['shard']!r}, not K/N") from None
    first_folder, first, _ = runs[0]
    counts = {shard.count for shard in shards}
    if len(counts) > 1:
        raise KeditError(f"shards split in different numbers {sorted(counts)}: {', '.join(folder for folder, *_ in runs)}")
    seen: dict[int, str] = {}
    for (folder, _, _), shard in zip(runs, shards):
        if shard.index in seen:
            raise KeditError(f"shard {shard} is in both {seen[shard.index]} and {folder}")
        seen[shard.index] = folder
    recorded = provenance(first)
    for folder, summary, _ in runs[1:]:
        difference = provenance_difference(recorded, provenance(summary))
        if difference is not None:
            raise KeditError(f"{folder} and {first_folder} are not shards of one run: {difference}")
    owner: dict[tuple[str, str], str] = {}
    records: list[CaseRecord] = []
    for folder, _, shard_records in runs:
        for record in shard_records:
            key = (record.split, record.case_id)
            if key in owner:
                raise KeditError(f"case {record.case_id} is in both {owner[key]} and {folder}: overlapping shards")
            owner[key] = folder
            records.append(record)
    count = shards[0].count
    missing = [str(Shard(index, count)) for index in range(1, count + 1) if index not in seen]
    summaries = [summary for _, summary, _ in runs]
    merged = {
        **first,
        "shard": None,
        "shards": [str(shard) for shard in sorted(shards)],
        "shards_missing": missing,
        "complete": not missing and all(summary.get("complete", True) for summary in summaries),
        "cases_expected": sum(int(summary.get("cases_expected") or 0) for summary in summaries),
        "cases_done": sum(int(summary.get("cases_done") or 0) for summary in summaries),
        "outcomes": outcome_counts(records),
        "timings": _summed_timings(summaries),
    }
    return merged, records


def _summed_timings(summaries: Sequence[Mapping[str, Any]]) -> dict[str, float]:
    total: dict[str, float] = {}
    for summary in summaries:
        for phase, seconds in (summary.get("timings") or {}).items():
            if isinstance(seconds, (int, float)) and not isinstance(seconds, bool):
                total[phase] = total.get(phase, 0) + seconds
    return total
