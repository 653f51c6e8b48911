"""From case records to the numbers of a run's tables: means, intervals, counts, groups.

Pure functions of :class:`~pytest_kedit.results.record.CaseRecord` objects. A table value is the mean
of a metric over the non-error cases of a split ×100 (:func:`~pytest_kedit.benchmark.metrics.mean_percent`),
and its interval the percentile bootstrap interval of that mean
(:func:`~pytest_kedit.benchmark.metrics.bootstrap_interval`). Both are computed over the records in
``case_id`` order, so no result depends on the order in which cases finished (pytest-xdist).
Which metrics a split has, and in which order, comes from :data:`pytest_kedit.benchmark.registry.SPLITS`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from typing import Any

from pytest_kedit.benchmark.metrics import BOOTSTRAP_CONFIDENCE, BOOTSTRAP_RESAMPLES, BOOTSTRAP_SEED, bootstrap_interval, mean_percent
from pytest_kedit.benchmark.registry import SPLITS, split_order
from pytest_kedit.benchmark.thresholds import Thresholds
from pytest_kedit.results.record import OUTCOMES, CaseRecord

#: split -> {metric: mean ×100, plus the counts of :data:`COUNT_KEYS`}.
Aggregate = dict[str, dict[str, float]]
#: (low, high) of a cell's bootstrap interval, ×100.
Interval = tuple[float, float]
#: split -> {metric: interval}, for the metrics of an :data:`Aggregate`.
Intervals = dict[str, dict[str, Interval]]

#: The per-split counts: every record, then one count per outcome.
COUNT_KEYS = ("cases", *OUTCOMES)


def sorted_records(records: Iterable[CaseRecord]) -> list[CaseRecord]:
    """The records ordered by ``case_id`` (then ``nodeid``): the canonical order of a run."""
    return sorted(records, key=lambda record: (record.case_id, record.nodeid or ""))


def aggregate(records: Iterable[CaseRecord]) -> Aggregate:
    """Per split: each metric's mean ×100 and the case counts.

    Only splits with at least one record appear, in registry order. For each split the result
    maps every metric of the split (registry order) that some non-error case has to
    ``mean_percent`` of its values in ``case_id`` order, plus the :data:`COUNT_KEYS` (ints).
    Error cases count in ``cases`` and ``error`` only. The result is the same, bit for bit,
    whatever the order of ``records``.
    """
    ordered = sorted_records(records)
    values = _metric_values(ordered)
    return {split: {**{metric: mean_percent(v) for metric, v in values.get(split, {}).items()}, **counts}
            for split, counts in _outcome_counts(ordered).items()}


def intervals(records: Iterable[CaseRecord]) -> Intervals:
    """Per split: the bootstrap interval (its defaults) of every metric mean of :func:`aggregate`,
    from the same values in the same order. Splits whose cases are all errors are left out."""
    return {split: {metric: bootstrap_interval(values) for metric, values in per_metric.items()}
            for split, per_metric in _metric_values(sorted_records(records)).items()}


def interval_summary(bounds: Intervals) -> dict[str, Any]:
    """The ``intervals`` entry of ``summary.json``: the method (``"percentile bootstrap over
    cases"``, ``confidence``, ``resamples``, ``seed``) and ``"splits"``: ``bounds`` (from
    :func:`intervals`) with each interval as ``[low, high]``."""
    return {
        "method": "percentile bootstrap over cases",
        "confidence": BOOTSTRAP_CONFIDENCE,
        "resamples": BOOTSTRAP_RESAMPLES,
        "seed": BOOTSTRAP_SEED,
        "splits": {split: {metric: list(interval) for metric, interval in per_metric.items()}
                   for split, per_metric in bounds.items()},
    }


def run_counts(records: Iterable[CaseRecord], thresholds: Thresholds) -> dict[str, Any]:
    """The ``counts`` entry of ``summary.json``.

    The :data:`COUNT_KEYS` over the whole run, and ``"splits"``: per split (registry order) the
    same counts plus ``"thresholds"``: for each metric that has a threshold in that split
    (``thresholds.for_split``), in the split's metric order, ``{"checked": n, "passed": k}``,
    where ``n`` counts the non-error cases that have the metric and ``k`` those among them
    whose ``failed_metrics`` do not name it. A metric no case has is left out.
    """
    ordered = sorted_records(records)
    splits: dict[str, dict[str, Any]] = {}
    for split, counts in _outcome_counts(ordered).items():
        cases = [record for record in ordered if record.split == split and record.outcome != "error"]
        tallies = {}
        for metric in thresholds.for_split(split):
            checked = [record for record in cases if metric in record.metrics]
            if checked:
                passed = sum(metric not in record.failed_metrics for record in checked)
                tallies[metric] = {"checked": len(checked), "passed": passed}
        splits[split] = {**counts, "thresholds": tallies}
    totals = {key: sum(entry[key] for entry in splits.values()) for key in COUNT_KEYS}
    return {**totals, "splits": splits}


def relation_of(record: CaseRecord) -> str | None:
    """The relation a case is grouped under: e1's relation, or the case's rule where the data
    gives one (``P22>P40``); None for a record that could not be parsed."""
    return record.relation


def arity_of(record: CaseRecord) -> str | None:
    """The ``1-N`` group of a RoundEdit case (the subject has N true objects): its ``arity``
    (the upstream ``type``, e.g. ``1-3@P136``) up to any ``@``; None without one."""
    return record.arity.partition("@")[0] if record.arity else None


def group_records(records: Iterable[CaseRecord], key: Callable[[CaseRecord], str | None],
                  missing: str) -> dict[str, list[CaseRecord]]:
    """The records by ``key`` (``missing`` where it gives None), groups in natural order
    (``P17`` before ``P131``, ``1-2`` before ``1-10``), each group's records in ``case_id`` order."""
    groups: dict[str, list[CaseRecord]] = {}
    for record in sorted_records(records):
        groups.setdefault(key(record) or missing, []).append(record)
    return {name: groups[name] for name in sorted(groups, key=_natural)}


def _natural(text: str) -> tuple[Any, ...]:
    """Sort key comparing runs of digits as numbers."""
    return tuple(int(part) if index % 2 else part for index, part in enumerate(re.split(r"(\d+)", text)))


def _outcome_counts(ordered: Iterable[CaseRecord]) -> dict[str, dict[str, int]]:
    """Split -> the :data:`COUNT_KEYS`; splits in registry order."""
    counts: dict[str, dict[str, int]] = {}
    for record in ordered:
        split_counts = counts.setdefault(record.split, dict.fromkeys(COUNT_KEYS, 0))
        split_counts["cases"] += 1
        split_counts[record.outcome] += 1
    return {split: counts[split] for split in sorted(counts, key=split_order)}


def _metric_values(ordered: Iterable[CaseRecord]) -> dict[str, dict[str, list[float]]]:
    """Split -> metric -> the values of the non-error records in the given order; splits and
    each split's metrics in registry order, only those with values. A value of a metric the
    split does not list in the registry is not a table value and is left out."""
    values: dict[str, dict[str, list[float]]] = {}
    for record in ordered:
        if record.outcome == "error":
            continue
        split_values = values.setdefault(record.split, {metric: [] for metric in SPLITS[record.split].metrics})
        for metric, value in record.metrics.items():
            if metric in split_values:
                split_values[metric].append(value)
    return {split: {metric: v for metric, v in values[split].items() if v}
            for split in sorted(values, key=split_order)}
