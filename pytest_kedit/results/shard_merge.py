"""Shard runs (``--kedit-shard=K/N``) of one model × method merged into one run, as ``kedit report``
reads them: the records are the union of theirs; their provenance
(:mod:`pytest_kedit.results.provenance`) must be equal and no case may be in two of them. A shard
that is missing leaves a run marked partial (``complete`` false), never an error: the tables of
what finished are still printed. Pure."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from pytest_kedit.dataset.shards import Shard
from pytest_kedit.errors import KeditError
from pytest_kedit.results.provenance import provenance_difference
from pytest_kedit.results.record import CaseKey, CaseRecord, outcome_counts
from pytest_kedit.results.summary import RunSummary

#: A report folder read back: (folder, summary, records).
ShardRun = tuple[str, RunSummary, list[CaseRecord]]


def is_shard(summary: RunSummary) -> bool:
    """Whether a run summary is that of one shard."""
    return summary.shard is not None


def merge_shards(runs: Sequence[ShardRun]) -> tuple[RunSummary, list[CaseRecord]]:
    """One run from the shard runs ``(folder, summary, records)`` of one model × method.

    Raises KeditError, naming the folders, when a run is not a shard, the shards were not split
    in the same number N, two runs are the same shard (:func:`check_shard_set`), their
    provenance differs (the field, as :func:`~pytest_kedit.results.provenance.provenance_difference`
    names it: :func:`check_provenance`), or a case is in two of them (:func:`record_union`).
    The summary is :func:`merged_summary`.
    """
    if not runs:
        raise KeditError("no shard runs to merge")
    shards = check_shard_set(runs)
    check_provenance(runs)
    records = record_union(runs)
    return merged_summary([summary for _, summary, _ in runs], shards, records), records


def check_shard_set(runs: Sequence[ShardRun]) -> list[Shard]:
    """The shard of each run, once every run is a shard, all of them of the same N and no two the same."""
    shards = []
    for folder, summary, _ in runs:
        if summary.shard is None:
            raise KeditError(f"{folder}: not a shard (its summary.json has no 'shard'), but other runs of "
                             f"{summary.model} / {summary.method} are shards; merge shards only with shards")
        shards.append(summary.shard)
    counts = {shard.count for shard in shards}
    if len(counts) > 1:
        raise KeditError(f"shards split in different numbers {sorted(counts)}: {', '.join(folder for folder, *_ in runs)}")
    seen: dict[int, str] = {}
    for (folder, _, _), shard in zip(runs, shards):
        if shard.index in seen:
            raise KeditError(f"shard {shard} is in both {seen[shard.index]} and {folder}")
        seen[shard.index] = folder
    return shards


def check_provenance(runs: Sequence[ShardRun]) -> None:
    """Every run's provenance is the first run's."""
    first_folder, first, _ = runs[0]
    recorded = first.provenance()
    for folder, summary, _ in runs[1:]:
        difference = provenance_difference(recorded, summary.provenance())
        if difference is not None:
            raise KeditError(f"{folder} and {first_folder} are not shards of one run: {difference}")


def record_union(runs: Sequence[ShardRun]) -> list[CaseRecord]:
    """The runs' records, in run order, once no case (split and case id) is in two runs."""
    owner: dict[CaseKey, str] = {}
    records: list[CaseRecord] = []
    for folder, _, shard_records in runs:
        for record in shard_records:
            if record.key in owner:
                raise KeditError(f"case {record.case_id} is in both {owner[record.key]} and {folder}: overlapping shards")
            owner[record.key] = folder
            records.append(record)
    return records


def merged_summary(summaries: Sequence[RunSummary], shards: Sequence[Shard], records: Sequence[CaseRecord]) -> RunSummary:
    """The first shard's summary, with ``shard`` None, ``shards`` the shards merged (in order) and
    ``shards_missing`` the others, ``complete`` true only when every shard is there and
    finished, ``cases_expected`` / ``cases_done`` and the ``timings`` summed, and the outcomes
    of ``records``."""
    count, present = shards[0].count, {shard.index for shard in shards}
    missing = tuple(Shard(index, count) for index in range(1, count + 1) if index not in present)
    return dataclasses.replace(
        summaries[0],
        shard=None,
        shards=tuple(sorted(shards)),
        shards_missing=missing,
        complete=not missing and all(summary.complete for summary in summaries),
        cases_expected=sum(summary.cases_expected for summary in summaries),
        cases_done=sum(summary.cases_done for summary in summaries),
        outcomes=outcome_counts(records),
        timings=_summed_timings(summaries),
    )


def _summed_timings(summaries: Sequence[RunSummary]) -> dict[str, float]:
    total: dict[str, float] = {}
    for summary in summaries:
        for phase, seconds in summary.timings.items():
            total[phase] = total.get(phase, 0) + seconds
    return total
