"""Shard runs (``--kedit-shard=K/N``) of one model × method merged into one run, as ``kedit report``
reads them: the records are the union of theirs; their provenance
(:mod:`pytest_kedit.results.provenance`) must be equal and no case may be in two of them. A shard
that is missing leaves a run marked partial (``complete`` false), never an error: the tables of
what finished are still printed. Pure."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from pytest_kedit.dataset.shards import Shard, parse_shard
from pytest_kedit.errors import ConfigError, KeditError
from pytest_kedit.results.provenance import provenance, provenance_difference
from pytest_kedit.results.record import CaseKey, CaseRecord, outcome_counts


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
    owner: dict[CaseKey, str] = {}
    records: list[CaseRecord] = []
    for folder, _, shard_records in runs:
        for record in shard_records:
            if record.key in owner:
                raise KeditError(f"case {record.case_id} is in both {owner[record.key]} and {folder}: overlapping shards")
            owner[record.key] = folder
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
