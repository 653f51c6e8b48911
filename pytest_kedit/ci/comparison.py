"""Paired comparison of two runs on the cases they share: what ``kedit compare`` reports.

Two runs of the same data (two methods, two model versions, a change and its baseline) are
compared case by case. A case counts when both runs have it (same ``split`` and ``case_id``)
and neither record is an error. For each split and each of its metrics (registry order) the
result gives the number of shared cases with the metric, both means on the tables' scale
(``Metric.scale``: ×100 for a share or a rate, as is for a ratio or a count), their difference
B − A and its paired bootstrap interval (:func:`paired_bootstrap_interval`, rescaled); for a 0/1 metric also McNemar's exact p and the
flip counts (:func:`mcnemar_exact`). A metric *regressed* when its interval lies entirely on
its worse side (the registry's ``better`` says which side that is). Pure: numpy and scipy, no
model; :mod:`~pytest_kedit.ci.comparison_report` renders the result.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import NamedTuple

import numpy as np
import numpy.typing as npt
from scipy import stats

from pytest_kedit.benchmark.metrics import BOOTSTRAP_CONFIDENCE, BOOTSTRAP_RESAMPLES, BOOTSTRAP_SEED, mean_percent
from pytest_kedit.benchmark.registry import METRICS, SPLITS, Direction, split_order
from pytest_kedit.errors import KeditError
from pytest_kedit.results.record import CaseKey, CaseRecord, by_case, paired
from pytest_kedit.results.summary import RunSummary

#: state -> fact -> p, as in :attr:`CaseRecord.probabilities <pytest_kedit.results.record.CaseRecord>`.
Probabilities = dict[str, dict[str, float]]
#: One metric of a stream at every checkpoint of either run: (edits, its value in A, in B), None
#: where that run has no such checkpoint.
CurveChange = tuple[tuple[int, float | None, float | None], ...]
#: The checkpoint metrics that decide a stream metric the checkpoints do not have themselves.
_DECIDED_BY = {"collapse_at": ("ppl", "loc")}


def paired_bootstrap_interval(
    a: Sequence[float],
    b: Sequence[float],
    confidence: float = BOOTSTRAP_CONFIDENCE,
    resamples: int = BOOTSTRAP_RESAMPLES,
    seed: int = BOOTSTRAP_SEED,
) -> tuple[float, float]:
    """Percentile bootstrap interval of ``100 * (mean(b) - mean(a))`` over paired values.

    ``a[i]`` and ``b[i]`` are one case's values in two runs. A resample draws n case indices
    with replacement and takes both runs' values at the same indices, so the interval reflects
    the spread of the per-case differences, not of each run's values. This is
    ``scipy.stats.bootstrap((a, b), statistic, paired=True, method="percentile")`` with
    ``random_state=numpy.random.default_rng(seed)``, whose resample i takes the indices of row i
    of ``default_rng(seed).integers(0, n, size=(resamples, n))``; the statistic of a resample is
    ``100 * numpy.mean(b - a)`` over its indices, and the interval the ``(1 - confidence) / 2``
    and ``(1 + confidence) / 2`` quantiles (linear interpolation) of the ``resamples`` statistics.

    Always: a pure function of the pairs *in their order*, ``confidence``, ``resamples`` and
    ``seed``; ``low <= high``; when the differences ``b[i] - a[i]`` are all equal (as floats) every
    resample has the same statistic, so ``low == high``; one pair gives that pair's difference
    ×100 twice (every resample is that pair; scipy needs two). Swapping ``a`` and ``b`` negates
    and swaps the ends, and adding ``c`` to every ``b[i]`` shifts both by ``100 * c`` (up to
    rounding). (NaN, NaN) for no pairs or a difference that is not finite.

    Raises ValueError unless ``a`` and ``b`` have the same length, 0 < confidence < 1 and
    resamples >= 1.
    """
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    if resamples < 1:
        raise ValueError(f"resamples must be at least 1, got {resamples}")
    before, after = _paired_arrays(a, b)
    if before.size == 0 or not np.all(np.isfinite(after - before)):
        return math.nan, math.nan
    if np.all(after - before == (after - before)[0]):
        # One pair, or differences all equal: every resample is the same statistic (scipy needs two
        # pairs and, on constant data, may round its two quantiles apart).
        difference = float(_difference_of_means(before, after))
        return difference, difference
    result = stats.bootstrap((before, after), _difference_of_means, paired=True, vectorized=True,
                             n_resamples=resamples, confidence_level=confidence, method="percentile",
                             random_state=np.random.default_rng(seed))
    return float(result.confidence_interval.low), float(result.confidence_interval.high)


def _difference_of_means(before: npt.NDArray[np.float64], after: npt.NDArray[np.float64],
                         axis: int = -1) -> npt.NDArray[np.float64]:
    """The paired statistic: 100 × the mean over ``axis`` of the differences ``after - before``."""
    means: npt.NDArray[np.float64] = 100 * np.mean(after - before, axis=axis)
    return means


class Flips(NamedTuple):
    """The discordant pairs of a 0/1 metric: the cases whose value changed between two runs."""

    #: 1 in run A, 0 in run B
    pass_to_fail: int
    #: 0 in run A, 1 in run B
    fail_to_pass: int


def mcnemar_exact(a: Sequence[float], b: Sequence[float]) -> tuple[float, Flips]:
    """McNemar's exact test of paired 0/1 values: ``(p_value, flips)``.

    ``flips`` counts the pairs that went 1 → 0 (``pass_to_fail``) and 0 → 1 (``fail_to_pass``).
    Under the null hypothesis that neither run is more likely to pass a case the other fails,
    each of the ``k`` discordant pairs is a fair coin, so ``p_value`` is
    ``scipy.stats.binomtest(pass_to_fail, k, 0.5, alternative="two-sided").pvalue``: the
    probability, under Binomial(k, 1/2), of the outcomes no more likely than the one observed.
    Concordant pairs (both 0, both 1) carry no evidence. 1.0 when there is no discordant pair.

    Raises ValueError unless ``a`` and ``b`` have the same length and every value is 0 or 1.
    """
    before, after = _paired_arrays(a, b)
    if not (np.isin(before, (0, 1)).all() and np.isin(after, (0, 1)).all()):
        raise ValueError("McNemar's test needs 0/1 values")
    flips = Flips(pass_to_fail=int(np.sum((before == 1) & (after == 0))),
                  fail_to_pass=int(np.sum((before == 0) & (after == 1))))
    discordant = flips.pass_to_fail + flips.fail_to_pass
    if discordant == 0:
        return 1.0, flips
    return float(stats.binomtest(flips.pass_to_fail, discordant, 0.5, alternative="two-sided").pvalue), flips


def _paired_arrays(a: Sequence[float], b: Sequence[float]) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """``a`` and ``b`` as float arrays; ValueError unless both are 1-D of the same length."""
    before, after = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if before.ndim != 1 or before.shape != after.shape:
        raise ValueError(f"paired values need two sequences of the same length, got {len(a)} and {len(b)}")
    return before, after


class MetricComparison(NamedTuple):
    """One metric of one split, over the shared cases that have it in both runs."""

    metric: str
    n: int
    #: the tables' numbers (the mean on the metric's scale) in run A and in run B
    mean_a: float
    mean_b: float
    #: ``mean_b - mean_a``
    difference: float
    #: :func:`paired_bootstrap_interval` of the difference
    interval: tuple[float, float]
    #: the direction of a change for the worse: "lower" when the registry's ``better`` is "higher"
    worse: Direction
    #: the interval lies entirely on the ``worse`` side of 0
    regressed: bool
    #: binary metrics only (else None): McNemar's exact p and the flip counts
    mcnemar_p: float | None
    flips: Flips | None


class CaseChange(NamedTuple):
    """A shared case that got worse, by its metric that got worse most."""

    case_id: str
    relation: str | None
    metric: str
    value_a: float
    value_b: float
    #: how much worse, on the tables' scale: ``value_a - value_b`` for a higher-is-better
    #: metric, ``value_b - value_a`` for a lower-is-better one; always > 0
    worse_by: float
    #: both records' probabilities; empty for a stream, whose thousands of probabilities its curves sum up
    probabilities_a: Probabilities
    probabilities_b: Probabilities
    #: a stream's (a record with a curve): metric -> :data:`CurveChange`, of ``metric`` or, for the
    #: collapse point, of the PPL ratio and locality that decide it; empty for other cases
    curves: dict[str, CurveChange]


class SplitComparison(NamedTuple):
    """One split of two runs."""

    split: str
    #: cases in both runs with no error in either
    shared: int
    #: cases of one run only
    only_a: int
    only_b: int
    #: cases in both runs that are an error in at least one (left out)
    errors: int
    #: the split's metrics that some shared case has in both runs, registry order
    metrics: tuple[MetricComparison, ...]
    #: the shared cases that got worse most, most first (see :func:`compare_runs`)
    worst_cases: tuple[CaseChange, ...]


class RunComparison(NamedTuple):
    """Run B against run A, split by split, and the statistics' settings."""

    #: the splits of either run, registry order
    splits: tuple[SplitComparison, ...]
    confidence: float
    resamples: int
    seed: int

    @property
    def only_a(self) -> int:
        """Cases only run A has, over all splits."""
        return sum(split.only_a for split in self.splits)

    @property
    def only_b(self) -> int:
        """Cases only run B has, over all splits."""
        return sum(split.only_b for split in self.splits)

    @property
    def regressions(self) -> tuple[tuple[str, str], ...]:
        """(split, metric) of every metric that regressed, in the order of :attr:`splits`."""
        return tuple((split.split, metric.metric) for split in self.splits for metric in split.metrics if metric.regressed)


def compare_runs(
    records_a: Iterable[CaseRecord],
    records_b: Iterable[CaseRecord],
    top: int = 5,
    confidence: float = BOOTSTRAP_CONFIDENCE,
    resamples: int = BOOTSTRAP_RESAMPLES,
    seed: int = BOOTSTRAP_SEED,
) -> RunComparison:
    """Run B against run A over the cases both share.

    Cases are matched by (split, case_id); a case whose record is an error in either run is
    left out (counted in ``errors``). For every split either run has (registry order) and every
    metric of the split in the registry that some shared case has in both runs (registry order),
    a :class:`MetricComparison` over those cases in ``case_id`` order: the means on the metric's
    scale, their difference, its :func:`paired_bootstrap_interval` (``confidence``, ``resamples``,
    ``seed``) on that scale,
    ``regressed`` when the interval lies entirely on the metric's worse side (``high < 0`` for a
    higher-is-better metric, ``low > 0`` for a lower-is-better one), and for a binary metric
    :func:`mcnemar_exact`.

    ``worst_cases`` are at most ``top`` shared cases with a metric that got worse, ranked by the
    largest ``worse_by`` of their metrics (ties: ``case_id``), each given by that metric (the
    first in the split's order among equals) with both records' probabilities.

    Raises KeditError when a run has two records of one case, ValueError for a negative ``top``.
    """
    if top < 0:
        raise ValueError(f"top must be at least 0, got {top}")
    cases_a, cases_b = _one_run(records_a, "A"), _one_run(records_b, "B")
    splits = sorted({split for split, _ in cases_a} | {split for split, _ in cases_b}, key=split_order)
    return RunComparison(
        splits=tuple(_compare_split(split, cases_a, cases_b, top, confidence, resamples, seed) for split in splits),
        confidence=confidence, resamples=resamples, seed=seed,
    )


def _one_run(records: Iterable[CaseRecord], run: str) -> dict[CaseKey, CaseRecord]:
    """The records of run ``run`` (A or B) by case; KeditError naming the case when one appears twice."""
    return by_case(records, lambda _, record: KeditError(f"run {run} has two records of case {record.case_id}: "
                                                          "not one run's report"))


def _compare_split(split: str, cases_a: Mapping[CaseKey, CaseRecord], cases_b: Mapping[CaseKey, CaseRecord],
                   top: int, confidence: float, resamples: int, seed: int) -> SplitComparison:
    """One split of :func:`compare_runs`."""
    ids_a = {case_id for name, case_id in cases_a if name == split}
    ids_b = {case_id for name, case_id in cases_b if name == split}
    pairs = [(a, b) for a, b in paired(cases_a, cases_b) if a.split == split]
    shared = [(a, b) for a, b in pairs if a.outcome != "error" and b.outcome != "error"]
    metrics = []
    for metric in SPLITS[split].metrics:
        values = [(a.metrics[metric], b.metrics[metric]) for a, b in shared if metric in a.metrics and metric in b.metrics]
        if values:
            metrics.append(_compare_metric(metric, [v for v, _ in values], [v for _, v in values],
                                           confidence, resamples, seed))
    changes = [change for a, b in shared if (change := _worst_change(split, a, b)) is not None]
    worst = sorted(changes, key=lambda change: (-change.worse_by, change.case_id))[:top]
    return SplitComparison(split, len(shared), len(ids_a - ids_b), len(ids_b - ids_a), len(pairs) - len(shared),
                           tuple(metrics), tuple(worst))


def _compare_metric(metric: str, a: Sequence[float], b: Sequence[float], confidence: float, resamples: int,
                    seed: int) -> MetricComparison:
    on_scale = METRICS[metric].on_scale
    mean_a, mean_b = on_scale(mean_percent(a)), on_scale(mean_percent(b))
    low, high = (on_scale(end) for end in paired_bootstrap_interval(a, b, confidence, resamples, seed))
    worse: Direction = "lower" if METRICS[metric].better == "higher" else "higher"
    regressed = all(METRICS[metric].worse_by(0.0, end) > 0 for end in (low, high))
    mcnemar_p, flips = mcnemar_exact(a, b) if METRICS[metric].binary else (None, None)
    return MetricComparison(metric, len(a), mean_a, mean_b, mean_b - mean_a, (low, high), worse, regressed,
                            mcnemar_p, flips)


def _worst_change(split: str, a: CaseRecord, b: CaseRecord) -> CaseChange | None:
    """The case's metric (of the split, in both records) that got worse most, or None when none got worse."""
    worst: CaseChange | None = None
    for metric in SPLITS[split].metrics:
        if metric not in a.metrics or metric not in b.metrics:
            continue
        value_a, value_b = a.metrics[metric], b.metrics[metric]
        worse_by = METRICS[metric].scale * METRICS[metric].worse_by(value_a, value_b)
        if worse_by > 0 and (worst is None or worse_by > worst.worse_by):
            if a.curve is None and b.curve is None:
                worst = CaseChange(a.case_id, a.relation, metric, value_a, value_b, worse_by, a.probabilities,
                                   b.probabilities, {})
            else:
                curves = {name: curve_change(a, b, name) for name in _DECIDED_BY.get(metric, (metric,))}
                worst = CaseChange(a.case_id, a.relation, metric, value_a, value_b, worse_by, {}, {}, curves)
    return worst


def curve_change(a: CaseRecord, b: CaseRecord, metric: str) -> CurveChange:
    """``metric`` at every checkpoint of the curve of stream ``a`` or ``b`` (the union of their
    numbers of edits, increasing), with its value in each (None where a record has no such
    checkpoint, no curve, or no such metric there)."""
    values = [{point["edits"]: point.get(metric) for point in (record.curve or {}).get("checkpoints", [])}
              for record in (a, b)]
    return tuple((int(edits), values[0].get(edits), values[1].get(edits)) for edits in sorted(values[0].keys() | values[1].keys()))


def comparability_warnings(summary_a: RunSummary, summary_b: RunSummary) -> list[str]:
    """One line per reason the runs' numbers may not be comparable, from their summaries:
    different data and different D scalings. Data differ when a data file both runs read has
    another sha256 in each (a file only one run read, such as the stream's beside the paper's
    splits, feeds cases the other run does not have); for summaries without their files' digests,
    when both record a data fingerprint and they differ. A different model or method is what a
    comparison is for and is not named."""
    warnings = []
    files_a, files_b = summary_a.data.files, summary_b.data.files
    if files_a and files_b:
        changed = sorted(name for name in files_a.keys() & files_b.keys() if files_a[name] != files_b[name])
        if changed:
            warnings.append(f"the runs read different versions of {', '.join(changed)}: a case id may name a different case in each")
    else:
        fingerprint_a, fingerprint_b = summary_a.data.fingerprint, summary_b.data.fingerprint
        if fingerprint_a and fingerprint_b and fingerprint_a != fingerprint_b:
            warnings.append(f"the runs used different data (fingerprint {fingerprint_a[:12]} in A, {fingerprint_b[:12]} "
                            "in B): a case id may name a different case in each")
    scaling_a, scaling_b = summary_a.distortion_scaling, summary_b.distortion_scaling
    if scaling_a != scaling_b:
        warnings.append(f"the runs scale D differently ({scaling_a} in A, {scaling_b} in B): D is not comparable")
    return warnings
