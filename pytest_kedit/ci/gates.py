"""Aggregate gates on the tables: ``reverse.cs_imp>=50``, ``easy.ir<=baseline+2``.

A gate names one split and one of its metrics, ``>=`` or ``<=``, and a bound on the tables'
scale (``Metric.scale``): shares and rates ×100 (:func:`~pytest_kedit.benchmark.metrics.mean_percent`),
ratios and counts as they are (``sequential.ppl<=1.5``, ``sequential.collapse_at>=100``):

- **absolute** (``reverse.cs_imp>=50``): the run's mean over the split's cases that have the
  metric (errors left out) must be on the right side of the bound;
- **relative** (``easy.ir<=baseline+2``, ``reverse.cs_imp>=baseline-5``, ``composite.cm>=baseline``):
  the run is compared with the baseline over the cases both have (neither an error), as the
  difference run − baseline of their means (on the tables' scale) against the margin, with the paired bootstrap
  interval of :func:`~pytest_kedit.ci.comparison.paired_bootstrap_interval` (cases in ``case_id``
  order, its default 95 %, 1000 resamples, seed 0). In ``significant`` mode a gate fails only
  when the whole interval lies beyond the margin on the bad side (``>=``: its high end below
  the margin; ``<=``: its low end above it); in ``point`` mode when the difference itself does.

A gate over no cases fails. Gates are parsed at configure time (:func:`parse_gates`) and checked
over the run's records when the session ends (:func:`check_gates`). Pure.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from tabulate import tabulate

from pytest_kedit.benchmark.metrics import BOOTSTRAP_CONFIDENCE, mean_percent
from pytest_kedit.benchmark.registry import METRICS, check_split_metric
from pytest_kedit.benchmark.thresholds import COMPARISONS, parse_number
from pytest_kedit.errors import ConfigError
from pytest_kedit.results.record import CaseKey, CaseRecord, by_case, paired

GATE_MODES = ("significant", "point")
GateMode = Literal["significant", "point"]
Status = Literal["held", "failed", "not checked"]

_GATE = re.compile(r"^\s*([a-z_]+)\.([a-z_]+)\s*(>=|<=)\s*(.+?)\s*$")
_RELATIVE = re.compile(r"^baseline\s*(?:([+-])\s*(\S+))?$")
_FORMS = "SPLIT.METRIC>=V, SPLIT.METRIC<=V, or relative to the baseline SPLIT.METRIC<=baseline+V / >=baseline-V"


@dataclass(frozen=True)
class Gate:
    split: str
    metric: str
    op: str
    #: the bound (absolute gate) or the margin added to the baseline (relative gate), on the tables' scale
    value: float
    relative: bool

    def __str__(self) -> str:
        bound = ("baseline" + (f"{self.value:+g}" if self.value else "")) if self.relative else f"{self.value:g}"
        return f"{self.split}.{self.metric}{self.op}{bound}"


@dataclass(frozen=True)
class GateResult:
    gate: Gate
    status: Status
    #: cases the value is over (relative: the cases shared with the baseline)
    n: int
    #: absolute: the run's mean; relative: the difference run − baseline of the means (the tables' scale)
    value: float = math.nan
    #: relative: the baseline's and the run's means over the shared cases
    baseline_mean: float = math.nan
    run_mean: float = math.nan
    #: relative: the paired bootstrap interval of the difference
    interval: tuple[float, float] | None = None
    #: why a gate failed without a value, or was not checked
    note: str = ""

    @property
    def failed(self) -> bool:
        return self.status == "failed"


def parse_gate(spec: str, option: str = "--kedit-gate") -> Gate:
    """One gate; ConfigError naming ``option`` and the spec for an unknown form, split or metric
    of the split, or a bound that is not a finite number."""
    where = f"{option} {spec!r}"
    match = _GATE.match(spec)
    if not match:
        raise ConfigError(f"{where}: expected {_FORMS}")
    split, metric, op, bound = match.groups()
    check_split_metric(split, metric, where)
    relative = _RELATIVE.match(bound)
    if relative:
        sign, margin = relative.groups()
        value = parse_number(f"{sign}{margin}", where) if sign else 0.0
        return Gate(split, metric, op, value, relative=True)
    return Gate(split, metric, op, parse_number(bound, where), relative=False)


def parse_gates(specs: Iterable[str], mode: str, has_baseline: bool, option: str = "--kedit-gate") -> tuple[Gate, ...]:
    """Every gate of ``specs`` (:func:`parse_gate`), after checking ``mode`` (one of
    :data:`GATE_MODES`); a relative gate without a baseline (``has_baseline`` false: neither
    ``--kedit-baseline`` nor ``--kedit-baseline-update``) is a ConfigError. Errors name
    ``option`` and ``{option}-mode`` (``kedit gate`` passes ``--gate``)."""
    if mode not in GATE_MODES:
        raise ConfigError(f"{option}-mode: {mode!r}; choose from {', '.join(GATE_MODES)}")
    gates = tuple(parse_gate(spec, option) for spec in specs)
    for gate in gates:
        if gate.relative and not has_baseline:
            raise ConfigError(f"{option} {str(gate)!r}: a gate relative to the baseline needs one: "
                              "add --kedit-baseline (or ini kedit_baseline)")
    return gates


def check_gates(gates: Sequence[Gate], records: Iterable[CaseRecord],
                baseline: Mapping[CaseKey, CaseRecord] | None, mode: GateMode) -> list[GateResult]:
    """Each gate checked over the run's ``records`` (and, for a relative gate, the ``baseline``'s
    records by (split, case_id); None: relative gates are not checked, as while the baseline is
    being updated), in the order given."""
    run = by_case(record for record in records if record.outcome != "error")
    return [_check_relative(gate, run, baseline, mode) if gate.relative else _check_absolute(gate, run)
            for gate in gates]


def _check_absolute(gate: Gate, run: Mapping[CaseKey, CaseRecord]) -> GateResult:
    values = [run[key].metrics[gate.metric] for key in sorted(run)
              if key[0] == gate.split and gate.metric in run[key].metrics]
    if not values:
        return GateResult(gate, "failed", 0, note="no cases")
    mean = METRICS[gate.metric].on_scale(mean_percent(values))
    held = bool(COMPARISONS[gate.op](mean, gate.value))
    return GateResult(gate, "held" if held else "failed", len(values), mean)


def _check_relative(gate: Gate, run: Mapping[CaseKey, CaseRecord], baseline: Mapping[CaseKey, CaseRecord] | None,
                    mode: GateMode) -> GateResult:
    if baseline is None:
        return GateResult(gate, "not checked", 0, note="the baseline is being updated")
    # Imported here: scipy.stats is slow to import and only needed for a relative gate.
    from pytest_kedit.ci.comparison import paired_bootstrap_interval

    pairs = [(was, now) for was, now in paired(baseline, run) if was.split == gate.split and was.outcome != "error"
             and gate.metric in was.metrics and gate.metric in now.metrics]
    if not pairs:
        return GateResult(gate, "failed", 0, note="no cases shared with the baseline")
    before = [was.metrics[gate.metric] for was, _ in pairs]
    after = [now.metrics[gate.metric] for _, now in pairs]
    on_scale = METRICS[gate.metric].on_scale
    base_mean, run_mean = on_scale(mean_percent(before)), on_scale(mean_percent(after))
    difference = run_mean - base_mean
    low, high = paired_bootstrap_interval(before, after)
    interval = (on_scale(low), on_scale(high))
    # The end of the interval nearest the allowed side: the whole interval is beyond the margin
    # exactly when that end is.
    nearest = interval[1] if gate.op == ">=" else interval[0]
    tested = nearest if mode == "significant" else difference
    held = bool(COMPARISONS[gate.op](tested, gate.value))  # NaN (a difference that is not finite) fails
    return GateResult(gate, "held" if held else "failed", len(pairs), difference, base_mean, run_mean, interval)


def gate_rows(results: Sequence[GateResult]) -> list[list[str]]:
    """One row per gate: gate, result, value, interval, n, note (pre-formatted cells)."""
    rows = []
    for result in results:
        if result.n == 0:
            value = interval = "–"
        elif result.gate.relative:
            value = f"{result.value:+.2f} ({result.run_mean:.2f} vs {result.baseline_mean:.2f})"
            interval = f"[{result.interval[0]:+.2f}, {result.interval[1]:+.2f}]" if result.interval else "–"
        else:
            value, interval = f"{result.value:.2f}", "–"
        rows.append([f"`{result.gate}`", result.status, value, interval, str(result.n), result.note])
    return rows


def gates_markdown(results: Sequence[GateResult], mode: GateMode) -> str:
    """The gates as Markdown: a pipe table (gate, result, value, interval, n, note) and a line
    saying how relative gates were decided; empty when there are no gates. For the terminal and
    for ``GITHUB_STEP_SUMMARY``."""
    if not results:
        return ""
    table: str = tabulate(gate_rows(results), headers=["gate", "result", "value", "interval", "n", "note"],
                          tablefmt="pipe", disable_numparse=True,
                          colalign=("left", "left", "right", "right", "right", "left"))
    failed = sum(result.failed for result in results)
    verdict = f"{failed} of {len(results)} gates failed" if failed else f"all {len(results)} gates held"
    how = (f"the whole paired bootstrap {100 * BOOTSTRAP_CONFIDENCE:g}% interval beyond the margin"
           if mode == "significant" else "the difference itself beyond the margin")
    note = ("Values are means over the cases with the metric (errors left out), on the tables' scale (shares ×100, "
            "ratios and counts as they are); a relative gate's value is "
            "run − baseline over the cases both have (run mean vs baseline mean), and it fails on " + how + ".")
    return f"Gates: {verdict}\n\n{table}\n\n{note}"

