"""Aggregate gates (``pytest_kedit.ci.gates``): parsing, absolute and relative checks, Markdown."""

from __future__ import annotations

import itertools
import math
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pytest_kedit.benchmark.registry import SPLITS
from pytest_kedit.ci.gates import Gate, GateMode, GateResult, check_gates, gates_markdown, parse_gate, parse_gates
from pytest_kedit.errors import ConfigError
from pytest_kedit.results.record import CaseKey, CaseRecord, by_case

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


def test_an_absolute_gate_is_the_mean_of_its_splits_cases_by_hand():
    """Reverse CS_imp of 1, 0, 1, 1 is 75.00 in the table; an error and another split do not count."""
    records = [record("reverse", i, cs_imp=v) for i, v in enumerate([1.0, 0.0, 1.0, 1.0])]
    records += [record("reverse", 9, "error"), record("composite", 0, cs_imp=0.0)]
    specs = ["reverse.cs_imp>=75", "reverse.cs_imp>=75.5", "reverse.cs_imp<=75", "reverse.cs_imp<=74.5"]
    results = check_gates([parse_gate(spec) for spec in specs], records, None, "significant")
    assert [(r.status, r.value, r.n) for r in results] == [("held", 75.0, 4), ("failed", 75.0, 4), ("held", 75.0, 4),
                                                          ("failed", 75.0, 4)]


def test_a_gate_on_a_ratio_or_a_count_is_on_table_3s_scale_by_hand():
    """Two streams with PPL ratios 1.2 and 1.6 (Table 3: 1.40) and collapse points 100 and 40
    (70.00); their ES of 0.9 and 0.7 is a share (80.00). A relative gate's difference is on the
    same scale: 1.7 and 2.1 against 1.2 and 1.6 is +0.50, in every resample."""
    records = [record("sequential", 0, ppl=1.2, collapse_at=100.0, es=0.9),
               record("sequential", 1, ppl=1.6, collapse_at=40.0, es=0.7)]
    specs = ["sequential.ppl<=1.5", "sequential.ppl<=1.3", "sequential.collapse_at>=70", "sequential.collapse_at>=100",
             "sequential.es>=80", "sequential.es>=0.9"]
    results = check_gates([parse_gate(spec) for spec in specs], records, None, "significant")
    assert [(r.status, round(r.value, 9)) for r in results] == [
        ("held", 1.4), ("failed", 1.4), ("held", 70.0), ("failed", 70.0), ("held", 80.0), ("held", 80.0)]
    later = [record("sequential", 0, ppl=1.7), record("sequential", 1, ppl=2.1)]
    (worse,) = check_gates([parse_gate("sequential.ppl<=baseline+0.1")], later, by_case(records), "point")
    assert worse.interval is not None
    assert (worse.status, round(worse.value, 9), *(round(end, 9) for end in worse.interval)) == ("failed", 0.5, 0.5, 0.5)


def test_a_gate_over_no_cases_fails():
    gates = [parse_gate("hard.succ>=50"), parse_gate("hard.succ>=baseline")]
    results = check_gates(gates, [record("easy", 0, succ=1.0)], {}, "significant")
    assert [(r.status, r.note) for r in results] == [("failed", "no cases"), ("failed", "no cases shared with the baseline")]


def test_relative_gates_are_not_checked_while_the_baseline_is_being_updated():
    (result,) = check_gates([parse_gate("easy.ir<=baseline+2")], [record("easy", 0, ir=0.5)], None, "significant")
    assert result.status == "not checked" and not result.failed


def shared_runs(pairs: list[tuple[float, float]]) -> tuple[dict[CaseKey, CaseRecord], list[CaseRecord]]:
    """A baseline and a run of easy IR sharing one case per pair (baseline value, run value), and
    each with a case of its own, far off, that a relative gate must leave out."""
    baseline = by_case([record("easy", i, ir=before) for i, (before, _) in enumerate(pairs)] + [record("easy", 500, ir=50.0)])
    run = [record("easy", i, ir=after) for i, (_, after) in enumerate(pairs)] + [record("easy", 600, ir=-50.0)]
    return baseline, run


def relative(op: str, margin: float, pairs: list[tuple[float, float]], mode: GateMode) -> GateResult:
    baseline, run = shared_runs(pairs)
    (result,) = check_gates([Gate("easy", "ir", op, margin, True)], run, baseline, mode)
    return result


unit_pairs = st.lists(st.tuples(st.floats(0, 1), st.floats(0, 1)), min_size=1, max_size=30)
quarters = st.sampled_from([0.0, 0.25, 0.5, 0.75, 1.0])
ops = st.sampled_from([">=", "<="])
modes = st.sampled_from(["significant", "point"])


@settings(max_examples=30)
@given(st.lists(st.floats(0, 1), min_size=1, max_size=30), ops, st.floats(0, 30), modes)
def test_a_relative_gate_holds_for_a_run_identical_to_its_baseline(values: list[float], op: str, slack: float,
                                                                    mode: GateMode):
    margin = -slack if op == ">=" else slack  # the margin on the side the gate allows
    result = relative(op, margin, [(v, v) for v in values], mode)
    assert (result.status, result.n, result.value, result.interval) == ("held", len(values), 0.0, (0.0, 0.0))
    assert result.run_mean == result.baseline_mean


@settings(max_examples=30)
@given(unit_pairs, ops, st.floats(-30, 30), modes, st.floats(0.01, 1), st.booleans())
def test_moving_every_run_value_the_way_a_gate_allows_never_fails_it(pairs: list[tuple[float, float]], op: str,
                                                                      margin: float, mode: GateMode, step: float,
                                                                      is_relative: bool):
    shift = step if op == ">=" else -step

    def check(shifted: float, bound: float) -> GateResult:
        baseline, run = shared_runs([(before, after + shifted) for before, after in pairs])
        (result,) = check_gates([Gate("easy", "ir", op, bound, is_relative)], run, baseline, mode)
        return result

    centre = 0.0 if is_relative else check(0.0, 0.0).value  # an absolute gate's bound: near the run's mean
    before, after = check(0.0, centre + margin), check(shift, centre + margin)
    assert (after.value - before.value) * (1 if op == ">=" else -1) > 0
    assert not (after.failed and not before.failed)


@settings(max_examples=30)
@given(unit_pairs, ops, st.floats(-30, 30))
def test_the_interval_holds_the_difference_and_significant_mode_fails_only_where_point_mode_does(
        pairs: list[tuple[float, float]], op: str, margin: float):
    significant = relative(op, margin, pairs, "significant")
    point = relative(op, margin, pairs, "point")
    assert significant.interval is not None and significant.interval == point.interval
    low, high = significant.interval
    assert low - 1e-9 <= significant.value <= high + 1e-9
    assert significant.value == pytest.approx(significant.run_mean - significant.baseline_mean, abs=1e-9)
    assert significant.n == point.n == len(pairs)
    if abs(significant.value - margin) > 1e-9:  # off the margin, where rounding cannot decide
        assert not (significant.failed and not point.failed)


def exact_bootstrap(pairs: list[tuple[float, float]]) -> list[Fraction]:
    """Every resample of the pairs (all n**n index tuples, each equally likely), as 100 × its mean
    difference run − baseline, exactly."""
    n = len(pairs)
    differences = [Fraction(after) - Fraction(before) for before, after in pairs]
    return [100 * sum(differences[i] for i in indices) / n for indices in itertools.product(range(n), repeat=n)]


@settings(max_examples=40)
@given(st.lists(st.tuples(quarters, quarters), min_size=1, max_size=4))
def test_the_interval_ends_are_the_tails_of_the_exact_bootstrap_distribution(pairs: list[tuple[float, float]]):
    """The ends of a 95 % interval from 1000 resamples leave about 2.5 % of the exact distribution
    beyond each: between 0.5 % and 6 % (the chance of a 1000-resample quantile outside those is
    below 1e-8)."""
    low, high = relative(">=", 0.0, pairs, "significant").interval or (math.nan, math.nan)
    statistics = exact_bootstrap(pairs)
    share = lambda selected: sum(selected) / len(statistics)  # noqa: E731
    assert share(s <= low + 1e-9 for s in statistics) >= 0.005 and share(s < low - 1e-9 for s in statistics) <= 0.06
    assert share(s >= high - 1e-9 for s in statistics) >= 0.005 and share(s > high + 1e-9 for s in statistics) <= 0.06


def test_a_run_worse_by_a_whole_point_fails_a_gate_on_its_worse_side_only():
    pairs = [(0.5, 0.25), (1.0, 0.75), (0.0, -0.25)]  # every run value 0.25 lower: 25 points lower
    for mode in ("significant", "point"):
        worse = relative(">=", -5.0, pairs, mode)  # type: ignore[arg-type]
        allowed = relative("<=", 5.0, pairs, mode)  # type: ignore[arg-type]
        assert (worse.status, worse.value, worse.interval) == ("failed", -25.0, (-25.0, -25.0))
        assert allowed.status == "held"


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
