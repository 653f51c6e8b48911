"""``kedit compare``'s output: a :class:`~pytest_kedit.ci.comparison.RunComparison` as Markdown
(tables through tabulate) or as JSON. Pure."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from tabulate import tabulate

from pytest_kedit.benchmark.registry import METRICS, SPLITS, STATES
from pytest_kedit.ci.comparison import CaseChange, CurveChange, MetricComparison, Probabilities, RunComparison, SplitComparison
from pytest_kedit.results.tables import DASH


def method_note(comparison: RunComparison) -> str:
    """The paragraph under a comparison's tables: how the differences, intervals and p-values
    were computed, and what "regressed" means."""
    percent = f"{100 * comparison.confidence:g}%"
    return (f"B − A: difference of the means over the shared cases (in both runs, an error in neither), on the tables' scale: "
            "×100 for a share or a rate, as is for a ratio or a count. "
            f"{percent} interval: paired percentile bootstrap (scipy.stats.bootstrap), the shared cases resampled "
            f"with replacement, the same cases for A and B, {comparison.resamples} resamples, seed {comparison.seed}. "
            "McNemar p (0/1 metrics): exact two-sided binomial test of pass→fail against fail→pass flips. "
            "A metric regressed when its whole interval lies on its worse side (↑: higher is better, ↓: lower is better).")


def comparison_markdown(comparison: RunComparison) -> str:
    """The comparison as Markdown: a line of case counts, then per split a ``###`` heading, a
    pipe table with one row per metric, and the cases that got worse most with their
    probabilities (A → B), a stream with its curves instead; last, which metrics regressed and
    :func:`method_note`."""
    shared = ", ".join(f"{split.split} {split.shared}" for split in comparison.splits) or DASH
    errors = sum(split.errors for split in comparison.splits)
    parts = [f"Shared cases: {shared}; only in A: {comparison.only_a}; only in B: {comparison.only_b}; "
             f"left out as an error in A or B: {errors}."]
    for split in comparison.splits:
        parts += _split_markdown(split, comparison.confidence)
    regressed = [f"{split} {METRICS[metric].label}" for split, metric in comparison.regressions]
    parts.append(f"**Regressed: {', '.join(regressed)}.**" if regressed else "No metric regressed.")
    parts.append(method_note(comparison))
    return "\n\n".join(parts)


def _split_markdown(split: SplitComparison, confidence: float) -> list[str]:
    definition = SPLITS[split.split]
    heading = f"### {definition.title} ({split.split})"
    if not split.metrics:
        return [heading, f"No shared cases (only in A: {split.only_a}, only in B: {split.only_b}, "
                         f"an error in A or B: {split.errors})."]
    header = ["metric", "better", "n", "A", "B", "B − A", f"{100 * confidence:g}% interval", "McNemar p",
              "pass→fail", "fail→pass", "regressed"]
    body = [[METRICS[m.metric].label, METRICS[m.metric].arrow, str(m.n), f"{m.mean_a:.2f}",
             f"{m.mean_b:.2f}", f"{m.difference:+.2f}", f"[{m.interval[0]:.1f}, {m.interval[1]:.1f}]",
             DASH if m.mcnemar_p is None else f"{m.mcnemar_p:.3g}",
             DASH if m.flips is None else str(m.flips.pass_to_fail), DASH if m.flips is None else str(m.flips.fail_to_pass),
             "**yes**" if m.regressed else "no"] for m in split.metrics]
    parts = [heading, _pipe_table(header, body, text_columns=2)]
    if split.worst_cases:
        rows = [[f"`{case.case_id}`", _escape(case.relation or DASH), METRICS[case.metric].label, f"{case.value_a:.3g}",
                 f"{case.value_b:.3g}", f"{case.worse_by:.2f}"] for case in split.worst_cases]
        parts += ["Cases that got worse most (worse by: the change on the tables' scale in the metric's worse direction):",
                  _pipe_table(["case", "relation", "metric", "A", "B", "worse by"], rows, text_columns=3),
                  f"Their {'curves' if any(case.curves for case in split.worst_cases) else 'probabilities'}, A → B:\n\n"
                  + "\n".join(f"- `{case.case_id}`: {_case_changes(case)}" for case in split.worst_cases)]
    return parts


def _case_changes(case: CaseChange) -> str:
    """What changed in a case that got worse: a stream's curves, another case's probabilities."""
    return _curve_changes(case.curves) if case.curves else _probability_changes(case.probabilities_a, case.probabilities_b)


def _curve_changes(curves: dict[str, CurveChange]) -> str:
    """``ES (final) at 10 edits 1 → 1, at 20 edits 0.95 → 0.9; PPL ratio at ...``: each metric's
    value at every checkpoint, "–" where a run has none."""
    return "; ".join(f"{METRICS[metric].label} " + ", ".join(f"at {edits} edits {_short(a)} → {_short(b)}"
                                                             for edits, a, b in curve)
                     for metric, curve in curves.items())


def _probability_changes(before: Probabilities, after: Probabilities) -> str:
    """``θ' k_o 0.41 → 0.02; ...``: every (state, fact) of either record, states in :data:`STATES`
    order then others, facts in order of first appearance; "–" where a record lacks one."""
    states = sorted(before.keys() | after.keys(), key=lambda state: (list(STATES).index(state) if state in STATES
                                                                    else len(STATES), state))
    items = []
    for state in states:
        facts_a, facts_b = before.get(state, {}), after.get(state, {})
        for fact in dict.fromkeys([*facts_a, *facts_b]):
            items.append(f"{STATES.get(state, state)} {fact} {_short(facts_a.get(fact))} → "
                         f"{_short(facts_b.get(fact))}")
    return "; ".join(items) or DASH


def _short(value: float | None) -> str:
    """A probability or a metric's value in three significant digits, "–" when there is none."""
    return DASH if value is None else f"{value:.3g}"


def _pipe_table(header: Sequence[str], body: Sequence[Sequence[str]], text_columns: int) -> str:
    """A pipe table of pre-formatted cells: the first ``text_columns`` left-aligned, the others right-aligned."""
    table: str = tabulate(body, headers=header, tablefmt="pipe", disable_numparse=True,
                          colalign=("left",) * text_columns + ("right",) * (len(header) - text_columns))
    return table


def _escape(text: str) -> str:
    return text.replace("|", "\\|")


def comparison_json(comparison: RunComparison) -> dict[str, Any]:
    """The comparison as JSON-ready data: ``only_a``, ``only_b``, ``regressed`` (``"split.metric"``
    keys), ``statistics`` (confidence, resamples, seed) and ``splits``: split -> its counts,
    ``metrics`` (metric -> the :class:`MetricComparison` fields, the interval as ``[low, high]``,
    ``flips`` as an object) and ``worst_cases``. A number that is not finite becomes null."""
    return {
        "only_a": comparison.only_a,
        "only_b": comparison.only_b,
        "regressed": [f"{split}.{metric}" for split, metric in comparison.regressions],
        "statistics": {"method": "paired percentile bootstrap over shared cases; McNemar exact test for 0/1 metrics",
                       "confidence": comparison.confidence, "resamples": comparison.resamples, "seed": comparison.seed},
        "splits": {
            split.split: {
                "shared": split.shared, "only_a": split.only_a, "only_b": split.only_b, "errors": split.errors,
                "metrics": {m.metric: _metric_json(m) for m in split.metrics},
                "worst_cases": [case._asdict() for case in split.worst_cases],
            }
            for split in comparison.splits
        },
    }


def _metric_json(comparison: MetricComparison) -> dict[str, Any]:
    return {
        "n": comparison.n, "mean_a": _finite(comparison.mean_a), "mean_b": _finite(comparison.mean_b),
        "difference": _finite(comparison.difference), "interval": [_finite(end) for end in comparison.interval],
        "worse": comparison.worse, "regressed": comparison.regressed, "mcnemar_p": comparison.mcnemar_p,
        "flips": None if comparison.flips is None else comparison.flips._asdict(),
    }


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None
