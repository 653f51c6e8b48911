"""Paired comparison of two runs (``pytest_kedit.ci.comparison``) and ``kedit compare``."""

from __future__ import annotations

import io
import json
import math
import os
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import example, given
from hypothesis import strategies as st
from run_summaries import run_summary

from pytest_kedit.ci.comparison import (
    Flips,
    comparability_warnings,
    compare_runs,
    mcnemar_exact,
    paired_bootstrap_interval,
)
from pytest_kedit.ci.comparison_report import comparison_json, comparison_markdown
from pytest_kedit.cli.main import BROKEN_PIPE, main
from pytest_kedit.errors import KeditError
from pytest_kedit.results.record import CaseRecord
from pytest_kedit.results.run_files import write_report
from pytest_kedit.results.summary import RunData, RunSummary

MODEL = "smollm2-135m"
#: Few resamples keep the property tests fast; the statistics do not depend on the count.
RESAMPLES = 200

unit = st.floats(0, 1, allow_nan=False)
#: Multiples of 1/8 in [-1, 1]: their sums and differences are exact, so equal differences stay equal.
eighths = st.integers(-8, 8).map(lambda k: k / 8)
bits = st.integers(0, 1)
confidences = st.sampled_from([0.5, 0.8, 0.9, 0.95, 0.99])
seeds = st.integers(0, 2**32 - 1)


@st.composite
def pairs(draw: st.DrawFn, values: st.SearchStrategy[float] = unit, min_size: int = 2) -> tuple[list[float], list[float]]:
    """Two runs' values of the same cases: (a, b) of equal length."""
    both = draw(st.lists(st.tuples(values, values), min_size=min_size, max_size=40))
    return [a for a, _ in both], [b for _, b in both]


def direct_paired_bootstrap(a: list[float], b: list[float], confidence: float, resamples: int,
                            seed: int) -> tuple[float, float]:
    """The percentile bootstrap written out: resample i takes row i of the seed's index draws for
    both runs; the ends are numpy's linear percentiles of 100 × the resampled mean differences."""
    differences = np.asarray(b) - np.asarray(a)
    indices = np.random.default_rng(seed).integers(0, len(a), size=(resamples, len(a)))
    statistics = 100 * np.mean(differences[indices], axis=-1)
    low, high = np.percentile(statistics, [50 * (1 - confidence), 50 * (1 + confidence)])
    return float(low), float(high)


@given(pairs(), confidences, seeds)
@example(([0.0, 1.0, 1.0, 0.0], [1.0, 1.0, 0.0, 0.0]), 0.95, 0)
def test_paired_interval_is_the_percentile_bootstrap_of_paired_differences(
        ab: tuple[list[float], list[float]], confidence: float, seed: int) -> None:
    a, b = ab
    interval = paired_bootstrap_interval(a, b, confidence, RESAMPLES, seed)
    assert np.allclose(interval, direct_paired_bootstrap(a, b, confidence, RESAMPLES, seed), rtol=1e-12, atol=1e-9)


@given(pairs(), seeds)
def test_paired_interval_lies_between_the_extreme_differences(ab: tuple[list[float], list[float]], seed: int) -> None:
    a, b = ab
    low, high = paired_bootstrap_interval(a, b, resamples=RESAMPLES, seed=seed)
    differences = 100 * (np.asarray(b) - np.asarray(a))
    assert differences.min() - 1e-9 <= low <= high <= differences.max() + 1e-9


@given(st.lists(eighths, min_size=1, max_size=40), eighths, seeds)
def test_paired_interval_of_equal_differences_has_zero_width(a: list[float], shift: float, seed: int) -> None:
    b = [value + shift for value in a]
    assert paired_bootstrap_interval(a, b, resamples=RESAMPLES, seed=seed) == (100 * shift, 100 * shift)


@given(pairs(), st.floats(-1, 1), seeds)
def test_paired_interval_shifts_by_100c_when_c_is_added_to_b(ab: tuple[list[float], list[float]], shift: float,
                                                              seed: int) -> None:
    a, b = ab
    low, high = paired_bootstrap_interval(a, b, resamples=RESAMPLES, seed=seed)
    shifted = paired_bootstrap_interval(a, [value + shift for value in b], resamples=RESAMPLES, seed=seed)
    assert np.allclose(shifted, (low + 100 * shift, high + 100 * shift), atol=1e-9)


@given(pairs(), confidences, seeds)
def test_swapping_the_runs_negates_the_paired_interval(ab: tuple[list[float], list[float]], confidence: float,
                                                        seed: int) -> None:
    a, b = ab
    low, high = paired_bootstrap_interval(a, b, confidence, RESAMPLES, seed)
    assert np.allclose(paired_bootstrap_interval(b, a, confidence, RESAMPLES, seed), (-high, -low), atol=1e-9)


@given(st.lists(unit, min_size=2, max_size=40), st.lists(st.floats(0, 1), min_size=1, max_size=20), seeds)
def test_paired_interval_contains_the_mean_difference_of_symmetric_differences(
        a: list[float], spread: list[float], seed: int) -> None:
    """Differences ±s around their mean: the bootstrap distribution is symmetric about the mean."""
    half = [*spread, *(-s for s in spread)]
    a = (a * len(half))[:len(half)]
    b = [value + s for value, s in zip(a, half)]
    mean = 100 * float(np.mean(np.asarray(b) - np.asarray(a)))
    low, high = paired_bootstrap_interval(a, b, resamples=RESAMPLES, seed=seed)
    assert low - 1e-9 <= mean <= high + 1e-9


def test_paired_interval_degenerate_inputs() -> None:
    assert all(math.isnan(end) for end in paired_bootstrap_interval([], []))
    assert paired_bootstrap_interval([0.25], [1.0]) == (75.0, 75.0)  # every resample is the one pair
    assert all(math.isnan(end) for end in paired_bootstrap_interval([0.0, 1.0], [math.nan, 1.0]))
    with pytest.raises(ValueError, match="same length"):
        paired_bootstrap_interval([0.0, 1.0], [1.0])
    with pytest.raises(ValueError, match="confidence"):
        paired_bootstrap_interval([0.0, 1.0], [1.0, 1.0], confidence=1.0)
    with pytest.raises(ValueError, match="resamples"):
        paired_bootstrap_interval([0.0, 1.0], [1.0, 1.0], resamples=0)


def direct_mcnemar_p(pass_to_fail: int, fail_to_pass: int) -> float:
    """The exact two-sided binomial p for k = pass_to_fail of n discordant pairs, p = 1/2: the
    total probability of the outcomes no more likely than k (exact integer arithmetic)."""
    n = pass_to_fail + fail_to_pass
    observed = math.comb(n, pass_to_fail)
    return min(1.0, sum(math.comb(n, i) for i in range(n + 1) if math.comb(n, i) <= observed) / 2.0**n)


@given(pairs(bits, min_size=0))
@example(([1.0] * 4 + [0.0], [0.0] * 5))
def test_mcnemar_is_the_exact_binomial_test_of_the_flips(ab: tuple[list[float], list[float]]) -> None:
    a, b = ab
    p_value, flips = mcnemar_exact(a, b)
    expected = Flips(sum(x == 1 and y == 0 for x, y in zip(a, b)), sum(x == 0 and y == 1 for x, y in zip(a, b)))
    assert flips == expected
    assert math.isclose(p_value, direct_mcnemar_p(*flips), rel_tol=1e-9)
    assert mcnemar_exact(b, a) == (p_value, Flips(flips.fail_to_pass, flips.pass_to_fail))


def test_mcnemar_without_discordant_pairs_is_1_and_rejects_non_binary_values() -> None:
    assert mcnemar_exact([1, 0, 1], [1, 0, 1]) == (1.0, Flips(0, 0))
    assert mcnemar_exact([], []) == (1.0, Flips(0, 0))
    assert mcnemar_exact([1.0] * 4, [0.0] * 4)[0] == 0.125  # 2 × (1/2)^4
    with pytest.raises(ValueError, match="0/1"):
        mcnemar_exact([0.5, 1.0], [1.0, 1.0])


def case(case_id: str, outcome: str = "passed", method: str = "ft", **metrics: float) -> CaseRecord:
    """A case record whose split is the prefix of its id; its probabilities echo its metrics."""
    return CaseRecord(case_id=case_id, split=case_id.split("-")[0], relation="P1", arity=None, model=MODEL,
                      method=method, outcome=outcome, metrics={key: float(v) for key, v in metrics.items()},
                      probabilities={"theta_prime": {"k_o": 0.5, "k_n_imp": float(metrics.get("cs_imp", 0))},
                                     "theta": {"k_o": 0.9}},
                      error="RuntimeError: boom" if outcome == "error" else None)


reverse_metrics = st.fixed_dictionaries({"cs_exp": bits, "cs_imp": bits, "cm": eighths})


@given(st.lists(st.tuples(reverse_metrics, reverse_metrics), min_size=1, max_size=20))
def test_compare_runs_swapped_negates_differences_and_swaps_flips(
        values: list[tuple[dict[str, float], dict[str, float]]]) -> None:
    run_a = [case(f"reverse-{i:04d}", "passed", "ft", **a) for i, (a, _) in enumerate(values)]
    run_b = [case(f"reverse-{i:04d}", "passed", "rome", **b) for i, (_, b) in enumerate(values)]
    forward, backward = compare_runs(run_a, run_b, resamples=RESAMPLES), compare_runs(run_b, run_a, resamples=RESAMPLES)
    for there, back in zip(forward.splits[0].metrics, backward.splits[0].metrics):
        assert (there.metric, there.n, there.mean_a, there.mean_b) == (back.metric, back.n, back.mean_b, back.mean_a)
        assert there.difference == -back.difference
        assert np.allclose(there.interval, (-back.interval[1], -back.interval[0]), atol=1e-9)
        assert there.mcnemar_p == back.mcnemar_p
        if there.flips is not None and back.flips is not None:
            assert there.flips == Flips(back.flips.fail_to_pass, back.flips.pass_to_fail)
    assert [m.metric for m in forward.splits[0].metrics] == ["cs_exp", "cs_imp", "cm"]  # registry order
    itself = compare_runs(run_a, run_a, resamples=RESAMPLES)
    assert all(m.interval == (0.0, 0.0) and not m.regressed for m in itself.splits[0].metrics)
    assert itself.splits[0].worst_cases == ()


def test_compare_runs_counts_shared_cases_and_leaves_errors_out() -> None:
    run_a = [case("reverse-0000", cs_exp=1, cs_imp=1, cm=0.5), case("reverse-0001", cs_exp=1, cs_imp=1, cm=0.5),
             case("reverse-0002", "error"), case("easy-0000", succ=1, d=0.1, ir=0, fr=0)]
    run_b = [case("reverse-0000", cs_exp=1, cs_imp=0, cm=0.25), case("reverse-0002", cs_exp=0, cs_imp=0, cm=0),
             case("reverse-0003", cs_exp=1, cs_imp=1, cm=0.5), case("composite-0000", cs_exp=1, cs_imp=1, cm=0, tfd=0)]
    result = compare_runs(run_a, run_b, resamples=RESAMPLES)
    assert [s.split for s in result.splits] == ["reverse", "composite", "easy"]  # registry order
    reverse, composite, easy = result.splits
    assert (reverse.shared, reverse.only_a, reverse.only_b, reverse.errors) == (1, 1, 1, 1)
    assert (composite.shared, composite.only_b, composite.metrics) == (0, 1, ())
    assert (easy.shared, easy.only_a) == (0, 1)
    assert (result.only_a, result.only_b) == (2, 2)
    cs_imp = reverse.metrics[1]
    assert (cs_imp.n, cs_imp.mean_a, cs_imp.mean_b, cs_imp.difference) == (1, 100.0, 0.0, -100.0)
    assert cs_imp.interval == (-100.0, -100.0) and cs_imp.worse == "lower" and cs_imp.regressed
    assert cs_imp.flips == Flips(1, 0) and cs_imp.mcnemar_p == 1.0  # one flip is no evidence for McNemar
    assert reverse.metrics[2].mcnemar_p is None and reverse.metrics[2].flips is None  # CM is not 0/1
    assert result.regressions == (("reverse", "cs_imp"), ("reverse", "cm"))
    [worst] = reverse.worst_cases
    assert (worst.case_id, worst.metric, worst.value_a, worst.value_b, worst.worse_by) == ("reverse-0000", "cs_imp",
                                                                                         1.0, 0.0, 100.0)
    assert worst.probabilities_a["theta_prime"]["k_n_imp"] == 1.0 and worst.probabilities_b["theta_prime"]["k_n_imp"] == 0.0


def test_a_lower_is_better_metric_regresses_when_it_rises() -> None:
    run_a = [case(f"easy-{i:04d}", succ=1, d=0.1, ir=0.0, fr=0) for i in range(30)]
    run_b = [case(f"easy-{i:04d}", succ=1, d=0.1 + 0.01 * (i % 3), ir=0.0, fr=0) for i in range(30)]
    metrics = {m.metric: m for m in compare_runs(run_a, run_b, resamples=RESAMPLES).splits[0].metrics}
    assert metrics["d"].worse == "higher" and metrics["d"].interval[0] > 0 and metrics["d"].regressed
    assert not metrics["ir"].regressed and metrics["fr"].flips == Flips(0, 0)
    improved = {m.metric: m for m in compare_runs(run_b, run_a, resamples=RESAMPLES).splits[0].metrics}
    assert improved["d"].interval[1] < 0 and not improved["d"].regressed


def test_worst_cases_rank_by_the_largest_change_for_the_worse_limited_to_top() -> None:
    run_a = [case(f"reverse-{i:04d}", cs_exp=1, cs_imp=1, cm=1.0) for i in range(4)]
    run_b = [case("reverse-0000", cs_exp=1, cs_imp=1, cm=0.75), case("reverse-0001", cs_exp=0, cs_imp=1, cm=0.5),
             case("reverse-0002", cs_exp=1, cs_imp=1, cm=0.0), case("reverse-0003", cs_exp=1, cs_imp=1, cm=1.0)]
    worst = compare_runs(run_a, run_b, top=2, resamples=RESAMPLES).splits[0].worst_cases
    assert [(c.case_id, c.metric, c.worse_by) for c in worst] == [("reverse-0001", "cs_exp", 100.0),
                                                                  ("reverse-0002", "cm", 100.0)]
    assert compare_runs(run_a, run_b, top=0, resamples=RESAMPLES).splits[0].worst_cases == ()


def stream(method: str, checkpoints: list[dict[str, float]], collapse_at: float) -> CaseRecord:
    """A stream's record: its curve's ``checkpoints``, its metrics the last one's and ``collapse_at``,
    and as many probabilities as a 100-edit stream has."""
    last = {key: value for key, value in checkpoints[-1].items() if key != "edits"}
    probabilities = {f"theta_{n}": {f"edit:{i}:new": 0.5 for i in range(n)} for n in range(1, 101)}
    return CaseRecord("sequential-0000", "sequential", "stream", None, MODEL, method,
                      metrics={**last, "collapse_at": collapse_at}, probabilities=probabilities,
                      curve={"schedule": {"edits": 20, "batch": 1, "every": 10, "scheme": "final"},
                             "checkpoints": checkpoints, "batches": []})


def test_a_stream_that_got_worse_shows_its_curve_not_its_thousands_of_probabilities() -> None:
    a = stream("rome", [{"edits": 10, "es": 1.0, "loc": 1.0, "ppl": 1.0}, {"edits": 20, "es": 0.9, "loc": 0.9, "ppl": 1.1}], 20)
    b = stream("memit", [{"edits": 10, "es": 1.0, "loc": 1.0, "ppl": 1.0}, {"edits": 20, "es": 0.5, "loc": 0.9, "ppl": 1.1}], 20)
    [worst] = compare_runs([a], [b], resamples=RESAMPLES).splits[0].worst_cases
    assert (worst.metric, worst.worse_by) == ("es", pytest.approx(40.0))
    assert worst.curves == {"es": ((10, 1.0, 1.0), (20, 0.9, 0.5))} and worst.probabilities_a == worst.probabilities_b == {}
    text = comparison_markdown(compare_runs([a], [b], resamples=RESAMPLES))
    assert "Their curves, A → B:\n\n- `sequential-0000`: ES (final) at 10 edits 1 → 1, at 20 edits 0.9 → 0.5\n" in text
    assert "edit:0:new" not in text and len(text) < 5000
    # the collapse point is not on the curve: the PPL ratio and locality that decide it are, at either run's checkpoints
    a = stream("rome", [{"edits": 10, "es": 1.0, "loc": 1.0, "ppl": 1.0}, {"edits": 20, "es": 0.9, "loc": 0.9, "ppl": 1.1}], 100)
    collapsed = stream("memit", [{"edits": 5, "es": 1.0, "loc": 1.0, "ppl": 1.0}, {"edits": 10, "es": 1.0, "loc": 0.4, "ppl": 2.5},
                                 {"edits": 20, "es": 0.9, "loc": 0.3, "ppl": 3.0}], 10)
    [worst] = compare_runs([a], [collapsed], resamples=RESAMPLES).splits[0].worst_cases
    assert worst.metric == "collapse_at" and worst.curves == {
        "ppl": ((5, None, 1.0), (10, 1.0, 2.5), (20, 1.1, 3.0)), "loc": ((5, None, 1.0), (10, 1.0, 0.4), (20, 0.9, 0.3))}
    text = comparison_markdown(compare_runs([a], [collapsed], resamples=RESAMPLES))
    assert "PPL ratio at 5 edits – → 1, at 10 edits 1 → 2.5, at 20 edits 1.1 → 3; Locality at 5 edits – → 1," in text
    assert json.loads(json.dumps(comparison_json(compare_runs([a], [collapsed], resamples=RESAMPLES)))) \
        ["splits"]["sequential"]["worst_cases"][0]["curves"]["ppl"][0] == [5, None, 1.0]


def test_stream_metrics_are_compared_on_the_tables_scale() -> None:
    """Shares ×100; the PPL ratio and the collapse point as they are, as Table 3 and the gates show them."""
    a = stream("rome", [{"edits": 100, "es": 0.9, "loc": 0.9, "ppl": 1.1}], 100)
    b = stream("memit", [{"edits": 100, "es": 0.5, "loc": 0.4, "ppl": 3.0}], 20)
    split = compare_runs([a], [b], resamples=RESAMPLES).splits[0]
    by_metric = {m.metric: m for m in split.metrics}
    assert (by_metric["collapse_at"].mean_a, by_metric["collapse_at"].mean_b, by_metric["collapse_at"].difference) == (100.0, 20.0, -80.0)
    assert by_metric["ppl"].mean_b == pytest.approx(3.0) and by_metric["ppl"].interval == pytest.approx((1.9, 1.9))
    assert (by_metric["es"].mean_a, by_metric["es"].mean_b) == pytest.approx((90.0, 50.0))
    [worst] = split.worst_cases
    assert (worst.metric, worst.worse_by) == ("collapse_at", 80.0)


def test_a_run_with_two_records_of_one_case_is_refused() -> None:
    twice = [case("reverse-0000", cs_exp=1, cs_imp=1, cm=0), case("reverse-0000", cs_exp=0, cs_imp=1, cm=0)]
    with pytest.raises(KeditError, match="two records of case reverse-0000"):
        compare_runs(twice, twice[:1])


def summary(method: str, fingerprint: str | None = "abc", scaling: str = "paper") -> RunSummary:
    return run_summary(model=MODEL, method=method, data=RunData("builtin", fingerprint, {}), distortion_scaling=scaling)


def test_data_files_differ_only_when_a_file_both_runs_read_changed() -> None:
    """A carried run also reads the stream's files: no warning for those; a changed file both read is named."""
    plain = {"easy.json": "e1", "hard.json": "h1"}
    carried = run_summary(model=MODEL, method="ft", data=RunData("builtin", "other", {**plain, "sequential.json": "s1"}))
    with_plain = run_summary(model=MODEL, method="ft", data=RunData("builtin", "abc", plain))
    assert comparability_warnings(with_plain, carried) == []
    changed = run_summary(model=MODEL, method="ft", data=RunData("builtin", "abc", {**plain, "hard.json": "h2"}))
    [warning] = comparability_warnings(carried, changed)
    assert "different versions of hard.json" in warning and "easy.json" not in warning


def test_comparability_warnings_name_different_data_and_d_scalings_only() -> None:
    assert comparability_warnings(summary("ft"), summary("rome")) == []
    assert comparability_warnings(summary("ft", None), summary("rome", "def")) == []
    [data] = comparability_warnings(summary("ft"), summary("rome", "def"))
    assert "different data" in data and "abc" in data and "def" in data
    [scaling] = comparability_warnings(summary("ft"), summary("ft", scaling="upstream"))
    assert "D is not comparable" in scaling


#: Run A: every reverse case passes; run B ("rome") loses CS_imp on 20 of 30; run C equals A.
REVERSE_A = [case(f"reverse-{i:04d}", cs_exp=1, cs_imp=1, cm=0.5) for i in range(30)] + [
    case("reverse-0030", cs_exp=1, cs_imp=1, cm=0.5), case("reverse-0031", cs_exp=1, cs_imp=1, cm=0.5)]
REVERSE_B = [case(f"reverse-{i:04d}", method="rome", cs_exp=1, cs_imp=int(i >= 20), cm=0.5) for i in range(30)] + [
    case("reverse-0031", "error", method="rome")]


@pytest.fixture
def runs(tmp_path: Path) -> tuple[Path, Path, Path]:
    for name, method, records in (("a", "ft", REVERSE_A), ("b", "rome", REVERSE_B), ("c", "ft", REVERSE_A)):
        write_report(tmp_path / name, summary(method, "def" if name == "b" else "abc"), records)
    return tmp_path / "a", tmp_path / "b", tmp_path / "c"


def table_row(markdown: str, first_cell: str) -> list[str]:
    line = next(line for line in markdown.splitlines() if line.startswith(f"| {first_cell} "))
    return [cell.strip() for cell in line.strip("|").split("|")]


def test_kedit_compare_markdown(runs: tuple[Path, Path, Path], capsys: pytest.CaptureFixture[str]) -> None:
    run_a, run_b, run_c = runs
    assert main(["compare", str(run_a), str(run_b), str(run_c), "--top", "3"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"# kedit compare\n\nA: `{run_a}` ({MODEL} / ft)\n\n## B: `{run_b}` ({MODEL} / rome)\n\n"
                          "**Warning:** the runs used different data")
    against_b, against_c = out.split(f"## B: `{run_c}`")
    assert "Shared cases: reverse 30; only in A: 1; only in B: 0; left out as an error in A or B: 1." in against_b
    assert "### ConflictEdit Reverse (reverse)" in against_b
    header = table_row(against_b, "metric")
    cs_imp = dict(zip(header, table_row(against_b, "CS_imp")))
    assert {key: cs_imp[key] for key in ("better", "n", "A", "B", "B − A", "pass→fail", "fail→pass", "regressed")} == {
        "better": "↑", "n": "30", "A": "100.00", "B": "33.33", "B − A": "-66.67", "pass→fail": "20", "fail→pass": "0",
        "regressed": "**yes**"}
    assert cs_imp["McNemar p"] == f"{2 * 0.5**20:.3g}"  # all 20 flips one way
    assert dict(zip(header, table_row(against_b, "CM")))["McNemar p"] == "–"
    assert [table_row(against_b, f"`reverse-{i:04d}`")[2:] for i in range(3)] == [["CS_imp", "1", "0", "100.00"]] * 3
    assert "`reverse-0003`" not in against_b  # --top 3
    assert "- `reverse-0000`: θ k_o 0.9 → 0.9; θ' k_n_imp 1 → 0; θ' k_o 0.5 → 0.5" in against_b
    assert "**Regressed: reverse CS_imp.**" in against_b
    assert "Warning" not in against_c and "No metric regressed." in against_c
    assert "paired percentile bootstrap" in against_c and "1000 resamples, seed 0" in against_c


def test_kedit_compare_json(runs: tuple[Path, Path, Path], capsys: pytest.CaptureFixture[str]) -> None:
    run_a, run_b, run_c = runs
    assert main(["compare", str(run_a), str(run_b), str(run_c), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["a"] == {"dir": str(run_a), "model": MODEL, "method": "ft"} and report["regressed"] is True
    against_b, against_c = report["comparisons"]
    assert against_b["b"]["method"] == "rome" and "different data" in against_b["warnings"][0]
    assert (against_b["only_a"], against_b["only_b"], against_b["regressed"]) == (1, 0, ["reverse.cs_imp"])
    reverse = against_b["splits"]["reverse"]
    assert (reverse["shared"], reverse["errors"]) == (30, 1)
    cs_imp = reverse["metrics"]["cs_imp"]
    assert cs_imp["flips"] == {"pass_to_fail": 20, "fail_to_pass": 0} and cs_imp["worse"] == "lower"
    assert cs_imp["interval"][1] < 0 and cs_imp["regressed"] is True
    assert [c["case_id"] for c in reverse["worst_cases"]] == [f"reverse-{i:04d}" for i in range(5)]  # default --top
    assert reverse["worst_cases"][0]["probabilities_b"]["theta_prime"]["k_n_imp"] == 0.0
    assert against_c["regressed"] == [] and against_c["warnings"] == []
    assert against_c["statistics"]["resamples"] == 1000


def test_kedit_compare_fail_on_regression_exit_status(runs: tuple[Path, Path, Path],
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    run_a, run_b, run_c = runs
    assert main(["compare", str(run_a), str(run_b), "--fail-on-regression"]) == 1
    assert main(["compare", str(run_a), str(run_c), "--fail-on-regression", "--json"]) == 0
    assert main(["compare", str(run_a), str(run_c), str(run_b), "--fail-on-regression"]) == 1
    assert main(["compare", str(run_b), str(run_a), "--fail-on-regression"]) == 0  # A → B improved
    assert capsys.readouterr().err == ""


def test_kedit_compare_errors_are_one_line(runs: tuple[Path, Path, Path], tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    run_a = runs[0]
    assert main(["compare", str(run_a), str(tmp_path / "nope")]) == 2
    assert main(["compare", str(run_a)]) == 2  # RUN_B is required
    assert main(["compare", str(run_a), str(run_a), "--top", "-1"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.splitlines()
    assert lines[0] == f"kedit: error: {tmp_path / 'nope'}: no such report directory"
    assert len(lines) == 3 and all(line.startswith("kedit: error: ") for line in lines)


def test_a_closed_output_pipe_ends_kedit_quietly(runs: tuple[Path, Path, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    """``kedit compare A B | head``: the reader is gone before kedit writes."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    stderr = io.StringIO()
    with open(write_end, "w", encoding="utf-8") as stdout, monkeypatch.context() as patch:
        patch.setattr(sys, "stdout", stdout)
        patch.setattr(sys, "stderr", stderr)
        assert main(["compare", str(runs[0]), str(runs[1])]) == BROKEN_PIPE
    # closing flushed the rest of the text into devnull, where main pointed the fd, without an error
    assert stderr.getvalue() == ""


def test_comparison_markdown_of_runs_without_shared_cases() -> None:
    markdown = comparison_markdown(compare_runs([case("hard-0000", succ=1, d=0, ir=0, fr=0)], [], resamples=RESAMPLES))
    assert "Shared cases: hard 0; only in A: 1; only in B: 0" in markdown
    assert "### RoundEdit HARD (hard)\n\nNo shared cases (only in A: 1, only in B: 0, an error in A or B: 0)." in markdown
    assert "No metric regressed." in markdown
