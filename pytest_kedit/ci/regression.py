"""A case judged against its baseline: did it regress, is it a known failure, did it improve?

With a baseline (:mod:`pytest_kedit.ci.baseline`) a case fails only when it got worse. For each
metric of the case's split that the case has now and had in the baseline:

- it **regressed** when it met its threshold in the baseline and misses it now, or when it moved
  the bad way (the registry's ``Metric.worse_by``) by more than ``tolerance``, on the per-case
  scale of the thresholds (CS is 0 or 1, TFD a relative drop); a metric with a threshold that the
  baseline lacks and the case misses now counts as regressed too;
- it is a **known** failure when it misses its threshold in both runs;
- it **improved** when it missed its threshold in the baseline and meets it now.

The case's verdict is ``regressed`` when any metric regressed, else ``known`` when any is a known
failure, else ``improved`` when any improved, else ``passed``; a case the baseline does not have
(or has only as an error) is ``new`` and is judged by its thresholds alone. The thresholds are
those of the run that reads the baseline: a baseline records metrics, not verdicts. Pure.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from pytest_kedit.benchmark.registry import METRICS, SPLITS
from pytest_kedit.benchmark.thresholds import Threshold, parse_number
from pytest_kedit.results.record import VERDICTS, Verdict

#: The default tolerance, per-case scale: above the float noise between thread layouts (probabilities
#: of one case differ by up to 1.4e-6 between a 1-thread and a 2-thread run), 0.01 points ×100.
DEFAULT_TOLERANCE = 1e-4
_LABELS = {"regressed": "regressed", "known": "known failures", "improved": "improved", "passed": "passed", "new": "new"}


@dataclass(frozen=True)
class Judgement:
    """A case against its baseline."""

    verdict: Verdict
    #: one line per metric that regressed, naming the metric, its baseline and its current value
    regressions: tuple[str, ...] = ()
    #: the metrics that missed their threshold in the baseline and meet it now
    improved: tuple[str, ...] = ()
    #: for a known failure, the xfail reason: ``known failure: CS_imp = 0 in the baseline too``
    reason: str = ""
    #: the metrics that regressed, in the split's order (one per line of ``regressions``)
    regressed: tuple[str, ...] = ()


def parse_tolerance(raw: str | None, option: str) -> float:
    """The tolerance written ``raw`` (None or empty: :data:`DEFAULT_TOLERANCE`); ConfigError naming
    ``option`` for anything but a finite number >= 0 (:func:`~pytest_kedit.benchmark.thresholds.parse_number`)."""
    return parse_number(raw, option, minimum=0) if raw else DEFAULT_TOLERANCE


def judge(split: str, current: Mapping[str, float], baseline: Mapping[str, float] | None,
          thresholds: Mapping[str, Threshold], tolerance: float) -> Judgement:
    """The verdict of a case of ``split`` with metric values ``current`` against its ``baseline``
    values (None: the baseline does not have the case), under ``thresholds`` (metric ->
    threshold, as ``Thresholds.for_split`` gives them) and ``tolerance`` (>= 0, per-case scale).
    See the module docstring for the rules; metrics are taken in the split's order, and a metric
    the case does not have now is not judged. A larger tolerance never adds a regression.
    """
    if baseline is None:
        return Judgement("new")
    regressions: list[str] = []
    regressed: list[str] = []
    known: list[str] = []
    improved: list[str] = []
    for metric in SPLITS[split].metrics:
        if metric not in current:
            continue
        value = current[metric]
        threshold = thresholds.get(metric)
        met_now = threshold is None or threshold.holds(value)
        label = METRICS[metric].label
        if metric not in baseline:
            if not met_now:
                regressions.append(f"{label} = {value:.4g} misses its threshold {threshold}; "
                                   f"the baseline has no {label} for this case")
                regressed.append(metric)
            continue
        before = baseline[metric]
        met_before = threshold is None or threshold.holds(before)
        drop = METRICS[metric].worse_by(before, value)
        if met_before and not met_now:
            regressions.append(f"{label} regressed: {value:.4g} now, {before:.4g} in the baseline "
                               f"(threshold {threshold} met in the baseline, missed now)")
            regressed.append(metric)
        elif drop > tolerance:
            regressions.append(f"{label} regressed: {value:.4g} now, {before:.4g} in the baseline "
                               f"(worse by {drop:.4g}, tolerance {tolerance:g})")
            regressed.append(metric)
        elif not met_before and not met_now:
            known.append(metric)
        elif not met_before and met_now:
            improved.append(metric)
    if regressions:
        return Judgement("regressed", tuple(regressions), tuple(improved), regressed=tuple(regressed))
    if known:
        return Judgement("known", (), tuple(improved), _known_reason(known, current, baseline))
    return Judgement("improved" if improved else "passed", (), tuple(improved))


def _known_reason(known: Iterable[str], current: Mapping[str, float], baseline: Mapping[str, float]) -> str:
    parts = []
    for metric in known:
        now, before = current[metric], baseline[metric]
        same = now == before or (math.isnan(now) and math.isnan(before))
        parts.append(f"{METRICS[metric].label} = {now:.4g}" + ("" if same else f" ({before:.4g} in the baseline)"))
    return f"known failure: {', '.join(parts)} in the baseline too"


def gated_cases_fail(verdicts: Iterable[str | None], errors: int) -> bool:
    """Whether a run gated against a baseline fails on its cases alone: one of them regressed, or
    one is an error (its data could not run, or its run raised)."""
    return errors > 0 or "regressed" in verdicts


def verdict_line(path: str, verdicts: Iterable[str | None], errors: int) -> str:
    """The terminal summary's line for a run gated against the baseline at ``path``:
    ``baseline PATH: 3 regressed, 60 known failures, 2 improved, 27 passed``, each verdict of
    :data:`VERDICTS` that occurs (in that order; ``None`` verdicts are not counted), then
    ``N error(s)`` when ``errors``. ``no cases`` when there is nothing to count."""
    counts = Counter(verdict for verdict in verdicts if verdict is not None)
    parts = [f"{counts[verdict]} {_LABELS[verdict]}" for verdict in VERDICTS if counts[verdict]]
    if errors:
        parts.append(f"{errors} error" + ("s" if errors > 1 else ""))
    return f"baseline {path}: {', '.join(parts) or 'no cases'}"
