"""Aggregate gates (``pytest_kedit.ci.gates``): parsing, absolute and relative checks, Markdown."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pytest_kedit.benchmark.metrics import mean_percent
from pytest_kedit.benchmark.registry import SPLITS
from pytest_kedit.ci.gates import Gate, check_gates, gates_markdown, parse_gate, parse_gates
from pytest_kedit.errors import ConfigError
from pytest_kedit.results.record import CaseRecord

split_metrics = st.sampled_from([(split, metric) for split in SPLITS for metric in SPLITS[split].metrics])
bounds = st.floats(-200, 200, allow_nan=False).map(lambda x: round(x, 3))


def record(split: str, index: int, outcome: str = "passed", **metrics: float) -> CaseRecord:
    return CaseRecord(f"{split}-{index:04d}", split, "P1", None, "m", "ft", outcome=outcome, metrics=dict(metrics))


@given(split_metrics, st.sampled_from([">=", "<="]), bounds, st.booleans())
def test_a_gate_reads_back_from_its_text(split_metric: tuple[str, str], op: str, value: float, relative: bool):
    split, metric = split_metric
    gate = Gate(split, metric, op, value, relative)
    assert parse_gate(str(gate)) == gate


@pytest.mark.parametrize(("spec", "gate"), [
    ("reverse.cs_imp>=50", Gate("reverse", "cs_imp", ">=", 50.0, False)),
    (" easy.ir <= baseline + 2 ", Gate("easy", "ir", "<=", 2.0, True)),
    ("reverse.cs_imp>=baseline-5", Gate("reverse", "cs_imp", ">=", -5.0, True)),
    ("composite.cm>=baseline", Gate("composite", "cm", ">=", 0.0, True)),
])
def test_the_documented_forms_parse(spec: str, gate: Gate):
    assert parse_gate(spec) == gate


@pytest.mark.parametrize(("spec", "words"), [
    ("cs_imp>=50", "expected SPLIT.METRIC"),
    ("reverse.cs_imp>50", "expected SPLIT.METRIC"),
    ("sideways.cs_imp>=50", "unknown split 'sideways'"),
    ("easy.cs_imp>=50", "split easy has no metric 'cs_imp'"),
    ("reverse.cs_imp>=inf", "not a finite number"),
    ("reverse.cs_imp>=nan", "not a finite number"),
    ("reverse.cs_imp>=fifty", "'fifty' is not a number"),
    ("easy.ir<=baseline+x", "'+x' is not a number"),
])
def test_a_bad_gate_is_one_line_naming_it(spec: str, words: str):
    with pytest.raises(ConfigError) as caught:
        parse_gate(spec)
    message = str(caught.value)
    assert words in message and spec.strip() in message and "\n" not in message


def test_a_relative_gate_needs_a_baseline_and_the_mode_is_checked():
    assert parse_gates(["easy.ir<=baseline+2"], "point", has_baseline=True)[0].relative
    with pytest.raises(ConfigError, match="needs one: add --kedit-baseline"):
        parse_gates(["reverse.cs_imp>=50", "easy.ir<=baseline+2"], "significant", has_baseline=False)
    with pytest.raises(ConfigError, match="--kedit-gate-mode: 'strict'; choose from significant, point"):
        parse_gates([], "strict", has_baseline=False)


@given(st.lists(st.sampled_from([0.0, 0.25, 1.0]), min_size=1, max_size=20), bounds, st.sampled_from([">=", "<="]))
def test_an_absolute_gate_is_the_table_mean_against_its_bound(values: list[float], bound: float, op: str):
    records = [record("reverse", i, cs_imp=v) for i, v in enumerate(values)] + [record("reverse", 99, "error")]
    (result,) = check_gates([Gate("reverse", "cs_imp", op, bound, False)], records, None, "significant")
    mean = mean_percent(values)
    assert (result.value, result.n) == (mean, len(values))
    assert result.status == ("held" if (mean >= bound if op == ">=" else mean <= bound) else "failed")


def test_a_gate_over_no_cases_fails():
    gates = [parse_gate("hard.succ>=50"), parse_gate("hard.succ>=baseline")]
    results = check_gates(gates, [record("easy", 0, succ=1.0)], {}, "significant")
    assert [(r.status, r.note) for r in results] == [("failed", "no cases"), ("failed", "no cases shared with the baseline")]


def test_relative_gates_are_not_checked_while_the_baseline_is_being_updated():
    (result,) = check_gates([parse_gate("easy.ir<=baseline+2")], [record("easy", 0, ir=0.5)], None, "significant")
    assert result.status == "not checked" and not result.failed


def direct_interval(before: np.ndarray, after: np.ndarray) -> tuple[float, float]:
    """The paired percentile bootstrap written out: resample i takes the case indices of row i of
    default_rng(0).integers(0, n, (1000, n)); the interval is the 2.5 and 97.5 percentiles."""
    n = before.size
    if n == 1:
        return 100 * float(after[0] - before[0]), 100 * float(after[0] - before[0])
    rows = np.random.default_rng(0).integers(0, n, size=(1000, n))
    statistics = 100 * np.mean(after[rows] - before[rows], axis=1)
    low, high = np.percentile(statistics, [2.5, 97.5])
    return float(low), float(high)


@settings(max_examples=40)
@given(st.lists(st.tuples(st.floats(0, 1), st.floats(0, 1)), min_size=1, max_size=30),
       st.sampled_from([">=", "<="]), st.floats(-30, 30), st.sampled_from(["significant", "point"]))
def test_a_relative_gate_is_a_paired_bootstrap_over_the_shared_cases(pairs: list[tuple[float, float]], op: str,
                                                                     margin: float, mode: str):
    before = np.array([b for b, _ in pairs])
    after = np.array([a for _, a in pairs])
    baseline = {("easy", f"easy-{i:04d}"): record("easy", i, ir=b) for i, b in enumerate(before)}
    baseline[("easy", "easy-0500")] = record("easy", 500, ir=0.0)  # only in the baseline: not shared
    run = [record("easy", i, ir=a) for i, a in enumerate(after)] + [record("easy", 600, ir=1.0)]  # only in the run
    (result,) = check_gates([Gate("easy", "ir", op, margin, True)], run, baseline, mode)  # type: ignore[arg-type]
    low, high = direct_interval(before, after)
    assert result.n == len(pairs) and result.interval is not None
    assert result.interval == pytest.approx((low, high), abs=1e-9)
    difference = mean_percent(after) - mean_percent(before)
    assert result.value == pytest.approx(difference, abs=1e-9)
    assert (result.run_mean, result.baseline_mean) == (mean_percent(after), mean_percent(before))
    tested = (result.interval[1] if op == ">=" else result.interval[0]) if mode == "significant" else result.value
    assert result.failed == (tested < margin if op == ">=" else tested > margin)


def test_significant_mode_fails_less_often_than_point_mode():
    """A worse run by a noisy amount: the point estimate is beyond the margin, the interval is not all beyond it."""
    before = [0.0, 1.0, 0.0, 1.0, 0.0, 1.0, 1.0, 1.0]
    after = [0.0, 1.0, 0.0, 0.0, 0.0, 1.0, 1.0, 1.0]
    baseline = {("reverse", f"reverse-{i:04d}"): record("reverse", i, cs_imp=v) for i, v in enumerate(before)}
    run = [record("reverse", i, cs_imp=v) for i, v in enumerate(after)]
    gate = parse_gate("reverse.cs_imp>=baseline-5")
    (significant,) = check_gates([gate], run, baseline, "significant")
    (point,) = check_gates([gate], run, baseline, "point")
    assert point.failed and not significant.failed and math.isclose(point.value, -12.5)


def test_the_markdown_lists_every_gate_with_its_result_and_value():
    run = [record("reverse", 0, cs_imp=1.0), record("reverse", 1, cs_imp=0.0)]
    baseline = {(r.split, r.case_id): r for r in [record("reverse", 0, cs_imp=1.0), record("reverse", 1, cs_imp=1.0)]}
    results = check_gates([parse_gate("reverse.cs_imp>=40"), parse_gate("reverse.cs_imp>=baseline-5"),
                           parse_gate("hard.fr<=0")], run, baseline, "point")
    text = gates_markdown(results, "point")
    assert text.startswith("Gates: 2 of 3 gates failed")
    assert "| `reverse.cs_imp>=40`" in text and "50.00" in text
    assert "| `reverse.cs_imp>=baseline-5` | failed" in text and "-50.00 (50.00 vs 100.00)" in text
    assert "| `hard.fr<=0`" in text and "no cases" in text
    assert gates_markdown([], "point") == ""
