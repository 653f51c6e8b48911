"""What each figure of the visual report shows, computed from the runs' case records.

Pure: no matplotlib, so the numbers behind a figure can be checked without drawing it
(:mod:`pytest_kedit.report.figures` draws them, :mod:`pytest_kedit.report.html` lays out the page).
Means and intervals come from :mod:`pytest_kedit.results.aggregation`, exactly as the tables compute
them; paired differences from :func:`pytest_kedit.ci.comparison.compare_runs`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple

from pytest_kedit.benchmark.cases import RoundCase
from pytest_kedit.benchmark.metrics import COLLAPSE_LOCALITY, COLLAPSE_PERPLEXITY
from pytest_kedit.benchmark.registry import (
    CONFLICT_EDIT,
    METRICS,
    ROUND_EDIT,
    SEQUENTIAL,
    SPLITS,
    Benchmark,
    split_order,
    splits_of,
)
from pytest_kedit.ci.comparison import RunComparison, comparability_warnings, compare_runs
from pytest_kedit.dataset import upstream
from pytest_kedit.dataset.sources import load_suite
from pytest_kedit.errors import KeditError
from pytest_kedit.results.aggregation import Aggregate, Intervals, aggregate, group_records, intervals, relation_of, sorted_records
from pytest_kedit.results.record import CaseKey, CaseRecord, by_case, paired
from pytest_kedit.results.summary import RunSummary

#: The model states of Figure 5, in the order of their bars.
DISTORTION_STATES = ("theta", "theta_m", "theta_prime")
#: The fact each Conflict Score weighs against k_o on θ' (the names :mod:`pytest_kedit.benchmark.plans` gives them).
CONFLICT_FACTS = {"cs": "k_n", "cs_exp": "k_n_exp", "cs_imp": "k_n_imp"}
#: The relation of a case that has none (a record that could not be parsed).
NO_RELATION = "–"


@dataclass(frozen=True)
class ReportRun:
    """One row of the report: a model × method, its run summary, its records (``case_id``
    order) and the numbers of its table row."""

    model: str
    method: str
    summary: RunSummary
    records: list[CaseRecord]
    #: :func:`~pytest_kedit.results.aggregation.aggregate` of the records
    result: Aggregate
    #: :func:`~pytest_kedit.results.aggregation.intervals` of the records
    bounds: Intervals
    #: the report folders the run was read from (none for a run still in memory)
    sources: tuple[str, ...]
    #: the run's name in charts: its method, or ``model / method`` when the report has several models
    label: str


def report_runs(runs: Mapping[tuple[str, str], tuple[RunSummary, Sequence[CaseRecord]]],
                sources: Mapping[tuple[str, str], Sequence[str]] | None = None) -> list[ReportRun]:
    """The rows of a report from ``(model, method) -> (summary, records)`` (the ``by_key`` of
    :class:`~pytest_kedit.results.run_files.Runs`), in the given order; ``sources`` names the folders
    each was read from. Raises KeditError when there is no run."""
    if not runs:
        raise KeditError("no runs to report")
    several_models = len({model for model, _ in runs}) > 1
    rows = []
    for (model, method), (summary, records) in runs.items():
        ordered = sorted_records(records)
        rows.append(ReportRun(model, method, summary, ordered, aggregate(ordered), intervals(ordered),
                              tuple((sources or {}).get((model, method), ())),
                              f"{model} / {method}" if several_models else method))
    return rows


def splits_run(runs: Sequence[ReportRun], benchmark: Benchmark | None = None) -> tuple[str, ...]:
    """The splits that some run has a record of (of ``benchmark`` only, when given), registry order."""
    present = {split for run in runs for split in run.result}
    names = splits_of(benchmark) if benchmark is not None else tuple(SPLITS)
    return tuple(sorted((name for name in names if name in present), key=split_order))


# -- Figure 5: the distribution over the true objects of one RoundEdit case ---------------------

#: How an object of a RoundEdit case is marked: the round-edited true object o1, another true
#: object, a true object when the data that names o1 could not be read, the edit target o*.
ObjectRole = Literal["o1", "other", "object", "o*"]


class ObjectBars(NamedTuple):
    """One object of a RoundEdit case and its probability in each state that probed it."""

    label: str
    role: ObjectRole
    #: state (of :data:`DISTORTION_STATES`) -> p; the plan probes the other true objects on
    #: θ and θ' only, o* on θm and θ' only
    p: dict[str, float]

    @property
    def lost(self) -> bool:
        """A true object less likely on θ' than on θ: for the other true objects, what the
        Ignore Rate counts."""
        return self.role != "o*" and self.p["theta_prime"] < self.p["theta"]


class DistortionPanel(NamedTuple):
    """Figure 5 for one case of one run: the bars and the case's D and IR ×100."""

    run: str
    case_id: str
    split: str
    relation: str | None
    #: o1 first, then the other true objects by p_θ (highest first, ties by label), then o*
    objects: tuple[ObjectBars, ...]
    #: the record's metrics ×100, as in Table 2 (None when the record lacks one)
    d: float | None
    ir: float | None
    #: p_θm(o1), shown in the caption when o1's label is not known
    p_mid_o1: float | None


def distortion_panel(run: str, record: CaseRecord, labels: tuple[str, str] | None) -> DistortionPanel:
    """The panel of a RoundEdit ``record``. ``labels`` are the case's (o1, o*) labels
    (:func:`round_edit_labels`). Without them, or when the record did not probe that o1, every
    true object is drawn as ``object``, o* is called "o*" and θm's p(o1) is left to the caption."""
    before, mid, after = (record.probabilities.get(state, {}) for state in DISTORTION_STATES)
    o1, target = labels if labels is not None and labels[0] in before and labels[0] in after else (None, "o*")
    rest = sorted((label for label in before if label != o1), key=lambda label: (-before[label], label))
    objects = []
    if o1 is not None:
        objects.append(ObjectBars(o1, "o1", {"theta": before[o1], "theta_m": mid["o1"], "theta_prime": after[o1]}))
    role: ObjectRole = "other" if o1 is not None else "object"
    objects += [ObjectBars(label, role, {"theta": before[label], "theta_prime": after[label]}) for label in rest]
    objects.append(ObjectBars(target, "o*", {"theta_m": mid["o*"], "theta_prime": after["o*"]}))
    d, ir = record.metrics.get("d"), record.metrics.get("ir")
    return DistortionPanel(run, record.case_id, record.split, record.relation, tuple(objects),
                           None if d is None else 100 * d, None if ir is None else 100 * ir,
                           None if o1 is not None else mid.get("o1"))


class CaseChoice(NamedTuple):
    """A RoundEdit case chosen for Figure 5, and why."""

    case_id: str
    split: str
    reasons: tuple[str, ...]


def distortion_cases(runs: Sequence[ReportRun], requested: Sequence[str] = ()) -> list[CaseChoice]:
    """The cases of Figure 5: for each run and RoundEdit split, the non-error case with the
    largest D and the one with the median D (the lower middle of the cases ordered by D, then
    ``case_id``), then the ``requested`` case ids. Each case once, with every reason it was
    chosen; ordered by split (registry order), then ``case_id``, then the requested ones in
    the order given. Raises KeditError for a requested id that no run has as a RoundEdit case."""
    reasons: dict[CaseKey, list[str]] = {}
    for run in runs:
        for split in splits_of(ROUND_EDIT):
            scored = sorted((r.metrics["d"], r.case_id) for r in run.records
                             if r.split == split and r.outcome != "error" and "d" in r.metrics)
            if not scored:
                continue
            for reason, (_, case_id) in (("largest D", scored[-1]), ("median D", scored[(len(scored) - 1) // 2])):
                reasons.setdefault((split, case_id), []).append(f"{reason} for {run.label}")
    chosen = sorted(reasons, key=lambda key: (split_order(key[0]), key[1]))
    choices = [CaseChoice(case_id, split, tuple(reasons[split, case_id])) for split, case_id in chosen]
    for case_id in requested:
        split = _round_split_of(runs, case_id)
        if (split, case_id) in reasons:
            continue
        reasons[split, case_id] = []
        choices.append(CaseChoice(case_id, split, ("asked for with --case",)))
    return choices


def _round_split_of(runs: Sequence[ReportRun], case_id: str) -> str:
    """The split of a RoundEdit case some run has; KeditError naming the case otherwise."""
    splits = {r.split for run in runs for r in run.records if r.case_id == case_id}
    if not splits:
        raise KeditError(f"--case {case_id}: no run has this case")
    round_splits = [split for split in splits if SPLITS[split].benchmark is ROUND_EDIT]
    if not round_splits:
        raise KeditError(f"--case {case_id}: Figure 5 shows RoundEdit cases ({', '.join(splits_of(ROUND_EDIT))}); "
                         f"this one is {', '.join(sorted(splits))}")
    return round_splits[0]


class RoundEditLabels(NamedTuple):
    """The labels of o1 and o* of each RoundEdit case of a run, read from the run's data; or why not."""

    #: case_id -> (o1's label, o*'s label)
    labels: dict[str, tuple[str, str]]
    #: why ``labels`` is empty, for the figure's caption; None when the data was read
    unavailable: str | None


def round_edit_labels(summary: RunSummary) -> RoundEditLabels:
    """o1 and o* of each RoundEdit case the run's data holds.

    A record names the true objects by label but neither says which of them was round-edited
    nor names the target o*, so the labels come from the data the run read: the summary's data
    source read again with the run's splits, used only when it still has the run's data
    fingerprint. Published data (``upstream:NAME@COMMIT``) is read from the download cache
    (downloaded again when missing).
    """
    source, fingerprint = summary.data.source, summary.data.fingerprint
    if not source or not fingerprint:
        return RoundEditLabels({}, "the run does not record its data source and fingerprint")
    splits = list(summary.splits)
    try:
        suite = load_suite(source.partition("@")[0] if upstream.is_upstream(source) else source, splits)
    except (KeditError, OSError) as exc:
        return RoundEditLabels({}, f"its data {source} cannot be read ({exc})")
    if suite.fingerprint != fingerprint:
        return RoundEditLabels({}, f"its data {source} has changed since the run (another fingerprint)")
    labels = {entry.case_id: (entry.edit.old.label, entry.edit.new.label) for split in splits_of(ROUND_EDIT)
              for entry in suite.splits.get(split, []) if isinstance(entry, RoundCase)}
    return RoundEditLabels(labels, None)


# -- ConflictEdit at a glance: p(k_n) against p(k_o) on θ' --------------------------------------

class ConflictPoint(NamedTuple):
    """One case on θ': the old fact's and the new fact's probabilities, and its Conflict Score."""

    case_id: str
    p_old: float
    p_new: float
    score: float


class ConflictSeries(NamedTuple):
    """One run's cases in a :class:`ConflictPanel`, with the metric's table mean ×100."""

    run: str
    points: tuple[ConflictPoint, ...]
    mean: float


class ConflictPanel(NamedTuple):
    """A Conflict Score of a split: one series per run that has it."""

    split: str
    #: ``cs``, ``cs_exp`` or ``cs_imp``
    metric: str
    series: tuple[ConflictSeries, ...]


def conflict_panels(runs: Sequence[ReportRun]) -> list[ConflictPanel]:
    """Per ConflictEdit split and Conflict Score of the split (registry order): each run's
    non-error cases that have the score, with p_θ'(k_o) and p_θ'(k_n) of that score's new fact."""
    panels = []
    for split in splits_run(runs, CONFLICT_EDIT):
        for metric in (m for m in SPLITS[split].metrics if m in CONFLICT_FACTS):
            series = []
            for run in runs:
                points = tuple(ConflictPoint(r.case_id, r.probabilities["theta_prime"]["k_o"],
                                             r.probabilities["theta_prime"][CONFLICT_FACTS[metric]], r.metrics[metric])
                               for r in run.records
                               if r.split == split and r.outcome != "error" and metric in r.metrics)
                if points:
                    series.append(ConflictSeries(run.label, points, run.result[split][metric]))
            if series:
                panels.append(ConflictPanel(split, metric, tuple(series)))
    return panels


# -- Sequential editing: the curves -------------------------------------------------------------

#: The stream metrics drawn against the number of edits, one figure each, in the split's order:
#: every metric of the curve (the collapse point is not one: it is marked on every figure).
CURVE_METRICS = tuple(metric for split in splits_of(SEQUENTIAL) for metric in SPLITS[split].metrics if metric != "collapse_at")
#: The metric read after every batch (the curve's ``batches``) rather than at the checkpoints.
BATCH_METRIC = "norm"
#: The levels that make a collapse (:func:`~pytest_kedit.benchmark.metrics.collapse_point`), on the scale of Table 3.
COLLAPSE_LEVELS = {"ppl": COLLAPSE_PERPLEXITY, "loc": 100 * COLLAPSE_LOCALITY}


class CurveLine(NamedTuple):
    """One run's line in a :class:`CurvePanel`: the mean over its streams of the metric at each
    number of edits, and where its streams collapsed."""

    run: str
    #: the run's position in the report (its colour)
    position: int
    edits: tuple[int, ...]
    #: on the scale of Table 3: ×100 for a share, as it is otherwise (``Metric.percent``)
    values: tuple[float, ...]
    #: the run's streams that have the metric (errors left out)
    streams: int
    #: the collapse points of the run's streams that collapsed (``collapse_at`` < their N), increasing
    collapses: tuple[int, ...]
    #: the longest N of the run's streams
    length: int

    @property
    def legend(self) -> str:
        """The line's legend entry: ``rome: collapsed at 20 edits``, ``memit (3 streams): no
        collapse in 100 edits``, ``ft (3 streams): 2 collapsed, at 20, 40 edits``."""
        streams = f" ({self.streams} streams)" if self.streams > 1 else ""
        if not self.collapses:
            return f"{self.run}{streams}: no collapse in {self.length} edits"
        count = f"{len(self.collapses)} collapsed, " if self.streams > 1 else "collapsed "
        return f"{self.run}{streams}: {count}at {', '.join(map(str, self.collapses))} edits"


class CurvePanel(NamedTuple):
    """One stream metric against the number of edits: a line per run that has it."""

    metric: str
    lines: tuple[CurveLine, ...]
    #: where the metric says a stream collapsed (the PPL ratio's and locality's level, on the
    #: panel's scale), None for the other metrics
    collapse_level: float | None


def stream_curves(runs: Sequence[ReportRun]) -> list[CurvePanel]:
    """A panel per metric of :data:`CURVE_METRICS` that some run's streams have (in that order),
    a :func:`curve_line` per run that has it."""
    streams = [run_streams(run) for run in runs]
    panels = []
    for metric in CURVE_METRICS:
        lines = tuple(line for index, (run, curves) in enumerate(zip(runs, streams))
                      if (line := curve_line(run.label, index, curves, metric)) is not None)
        if lines:
            panels.append(CurvePanel(metric, lines, COLLAPSE_LEVELS.get(metric)))
    return panels


#: A stream of a run: its record's metrics (the last checkpoint's, and ``collapse_at``) and its ``curve``.
Stream = tuple[dict[str, float], dict[str, Any]]


def run_streams(run: ReportRun) -> list[Stream]:
    """The run's stream records that have a curve, errors left out, in ``case_id`` order."""
    return [(record.metrics, record.curve) for record in run.records
            if record.split in splits_of(SEQUENTIAL) and record.outcome != "error" and record.curve is not None]


def curve_line(run: str, position: int, streams: Sequence[Stream], metric: str) -> CurveLine | None:
    """The line of run ``run`` (the ``position``-th of the report) for ``metric``, None when none of
    its ``streams`` has it. Each stream gives the metric at every checkpoint, the update norm
    (:data:`BATCH_METRIC`) after every batch; the line holds, at each number of edits every one of
    them has, the mean of their values (``math.fsum``), ×100 for a share as Table 3 shows it."""
    points = "batches" if metric == BATCH_METRIC else "checkpoints"
    series = [values for _, curve in streams
              if (values := {int(point["edits"]): point[metric] for point in curve[points] if metric in point})]
    if not series:
        return None
    edits = sorted(set.intersection(*(set(values) for values in series)))
    scale = METRICS[metric].scale
    return CurveLine(run, position, tuple(edits), tuple(scale * math.fsum(values[n] for values in series) / len(series)
                                                     for n in edits),
                     len(series), collapse_points(streams), max(int(curve["schedule"]["edits"]) for _, curve in streams))


def collapse_points(streams: Iterable[Stream]) -> tuple[int, ...]:
    """The collapse points of the streams that collapsed, increasing: ``collapse_at`` below the
    stream's N (the schedule's ``edits``); a stream that never collapsed has ``collapse_at`` = N."""
    return tuple(sorted(int(metrics["collapse_at"]) for metrics, curve in streams
                        if metrics.get("collapse_at", math.inf) < curve["schedule"]["edits"]))


# -- Per relation -------------------------------------------------------------------------------

class RelationHeatmap(NamedTuple):
    """A split's metrics by relation, for every run: the means ×100 of the per-relation tables."""

    split: str
    metrics: tuple[str, ...]
    #: every relation some run has a non-error case of, natural order
    relations: tuple[str, ...]
    runs: tuple[str, ...]
    #: [run][relation][metric] -> mean ×100, None where the run has no such value
    means: tuple[tuple[tuple[float | None, ...], ...], ...]
    #: [run][relation] -> the number of non-error cases
    counts: tuple[tuple[int, ...], ...]


def relation_heatmaps(runs: Sequence[ReportRun]) -> list[RelationHeatmap]:
    """One heatmap per split with non-error cases (registry order), its rows the relations
    (:func:`~pytest_kedit.results.aggregation.relation_of`), its cells :func:`aggregate` of each group."""
    heatmaps = []
    for split in splits_run(runs):
        cases = [[r for r in run.records if r.split == split and r.outcome != "error"] for run in runs]
        relations = tuple(group_records((r for run_cases in cases for r in run_cases), relation_of, NO_RELATION))
        if not relations:
            continue
        by_run = [group_records(run_cases, relation_of, NO_RELATION) for run_cases in cases]
        metrics = SPLITS[split].metrics
        means = tuple(tuple(tuple(aggregate(groups[name]).get(split, {}).get(m) if name in groups else None for m in metrics)
                            for name in relations) for groups in by_run)
        counts = tuple(tuple(len(groups.get(name, ())) for name in relations) for groups in by_run)
        heatmaps.append(RelationHeatmap(split, metrics, relations, tuple(run.label for run in runs), means, counts))
    return heatmaps


# -- Paired comparison with the baseline --------------------------------------------------------

class FlippedCase(NamedTuple):
    """A shared case whose 0/1 metric differs between the baseline (A) and another run (B)."""

    split: str
    case_id: str
    relation: str | None
    metric: str
    value_a: float
    value_b: float


class PairedComparison(NamedTuple):
    """A run (B) against the baseline (A, the report's first run)."""

    baseline: str
    run: str
    comparison: RunComparison
    #: the cases behind the flip counts of every 0/1 metric: split order, metric order, ``case_id``
    flipped: tuple[FlippedCase, ...]
    #: :func:`~pytest_kedit.ci.comparison.comparability_warnings` of the two summaries
    warnings: tuple[str, ...]


def paired_comparisons(runs: Sequence[ReportRun]) -> list[PairedComparison]:
    """Every run after the first against the first: :func:`compare_runs` and the flipped cases."""
    baseline = runs[0]
    return [PairedComparison(baseline.label, run.label, compare_runs(baseline.records, run.records),
                             flipped_cases(baseline.records, run.records),
                             tuple(comparability_warnings(baseline.summary, run.summary)))
            for run in runs[1:]]


def flipped_cases(records_a: Iterable[CaseRecord], records_b: Iterable[CaseRecord]) -> tuple[FlippedCase, ...]:
    """The cases of both runs (same split and ``case_id``, an error in neither) whose value of a
    0/1 metric of their split differs: the pairs McNemar's test counts."""
    flipped = []
    for a, b in paired(by_case(records_a), by_case(records_b)):
        if a.outcome == "error" or b.outcome == "error":
            continue
        for metric in SPLITS[b.split].metrics:
            if METRICS[metric].binary and metric in a.metrics and metric in b.metrics \
                    and a.metrics[metric] != b.metrics[metric]:
                flipped.append(FlippedCase(b.split, b.case_id, a.relation, metric, a.metrics[metric], b.metrics[metric]))
    metric_order = list(METRICS)
    return tuple(sorted(flipped, key=lambda f: (split_order(f.split), metric_order.index(f.metric), f.case_id)))
