"""Baselines: the per-case judgement (``pytest_kedit.ci.regression``), the file (``pytest_kedit.ci.baseline``)
and, end to end on a tiny model, --kedit-baseline-update, --kedit-baseline and the provenance check."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pytest_kedit.benchmark.registry import METRICS, SPLITS
from pytest_kedit.benchmark.thresholds import parse_thresholds
from pytest_kedit.ci.baseline import (
    BASELINE_FORMAT,
    BaselineChanges,
    BaselineError,
    baseline_changes,
    baseline_difference,
    baseline_text,
    default_path,
    read_baseline,
    safe_name,
    update_baseline,
    version_note,
)
from pytest_kedit.ci.regression import judge, verdict_line
from pytest_kedit.results.provenance import DATA_FILES, PROVENANCE_FIELDS
from pytest_kedit.results.record import CaseRecord

THRESHOLDS = parse_thresholds([])  # the defaults: each agrees with its metric's direction

splits = st.sampled_from(list(SPLITS))
tolerances = st.sampled_from([0.0, 1e-3, 0.1, 0.5, 1.0])


def value_of(metric: str) -> st.SearchStrategy[float]:
    if METRICS[metric].binary:
        return st.sampled_from([0.0, 1.0])
    if metric == "succ":
        return st.sampled_from([0.0, 0.5, 1.0])
    return st.floats(-1, 2, allow_nan=False).map(lambda x: round(x, 2))


@st.composite
def case_metrics(draw: st.DrawFn, split: str) -> dict[str, float]:
    """Values of some of the split's metrics (a case may lack one)."""
    return {m: draw(value_of(m)) for m in SPLITS[split].metrics if draw(st.integers(0, 5))}


@st.composite
def two_runs(draw: st.DrawFn) -> tuple[str, dict[str, float], dict[str, float]]:
    split = draw(splits)
    return split, draw(case_metrics(split)), draw(case_metrics(split))


def expected_regressions(split: str, now: dict[str, float], before: dict[str, float], tolerance: float) -> set[str]:
    """The rule written out: met in the baseline and missed now, or worse by more than the tolerance;
    a threshold missed now on a metric the baseline lacks."""
    thresholds = THRESHOLDS.for_split(split)
    out = set()
    for metric, value in now.items():
        threshold = thresholds.get(metric)
        met_now = threshold is None or threshold.holds(value)
        if metric not in before:
            if not met_now:
                out.add(metric)
            continue
        met_before = threshold is None or threshold.holds(before[metric])
        if (met_before and not met_now) or METRICS[metric].worse_by(before[metric], value) > tolerance:
            out.add(metric)
    return out


def regressed_metrics(split: str, now: dict[str, float], before: dict[str, float], tolerance: float) -> set[str]:
    judgement = judge(split, now, before, THRESHOLDS.for_split(split), tolerance)
    return {m for m in SPLITS[split].metrics if any(line.startswith(f"{METRICS[m].label} ") for line in judgement.regressions)}


@given(two_runs(), tolerances)
def test_a_case_regresses_exactly_when_a_metric_got_worse(runs: tuple[str, dict[str, float], dict[str, float]],
                                                          tolerance: float):
    split, now, before = runs
    judgement = judge(split, now, before, THRESHOLDS.for_split(split), tolerance)
    expected = expected_regressions(split, now, before, tolerance)
    assert regressed_metrics(split, now, before, tolerance) == expected
    assert (judgement.verdict == "regressed") == bool(expected)
    assert len(judgement.regressions) == len(expected)
    if judgement.verdict == "known":
        assert judgement.reason.startswith("known failure: ") and judgement.reason.endswith(" in the baseline too")
    if judgement.verdict in ("passed", "improved"):  # every threshold met now: the suite's assert passes
        thresholds = THRESHOLDS.for_split(split)
        assert all(thresholds[m].holds(v) for m, v in now.items() if m in thresholds)


@given(two_runs(), tolerances, tolerances)
def test_a_larger_tolerance_never_adds_a_regression(runs: tuple[str, dict[str, float], dict[str, float]],
                                                    small: float, large: float):
    split, now, before = runs
    small, large = sorted((small, large))
    assert regressed_metrics(split, now, before, large) <= regressed_metrics(split, now, before, small)


@given(two_runs(), tolerances)
def test_no_metric_regresses_both_ways(runs: tuple[str, dict[str, float], dict[str, float]], tolerance: float):
    split, a, b = runs
    shared_a = {m: v for m, v in a.items() if m in b}
    shared_b = {m: v for m, v in b.items() if m in a}
    assert not regressed_metrics(split, shared_a, shared_b, tolerance) & regressed_metrics(split, shared_b, shared_a, tolerance)


@given(splits.flatmap(lambda split: st.tuples(st.just(split), case_metrics(split))), tolerances)
def test_a_case_against_itself_never_regresses(case: tuple[str, dict[str, float]], tolerance: float):
    split, metrics = case
    thresholds = THRESHOLDS.for_split(split)
    judgement = judge(split, metrics, metrics, thresholds, tolerance)
    missed = any(m in thresholds and not thresholds[m].holds(v) for m, v in metrics.items())
    assert judgement.verdict == ("known" if missed else "passed")
    assert judge(split, metrics, None, thresholds, tolerance).verdict == "new"


def test_the_verdicts_and_their_messages():
    thresholds = THRESHOLDS.for_split("reverse")
    known = judge("reverse", {"cs_exp": 1.0, "cs_imp": 0.0, "cm": 0.2}, {"cs_exp": 1.0, "cs_imp": 0.0, "cm": 0.2},
                  thresholds, 0.0)
    assert (known.verdict, known.reason) == ("known", "known failure: CS_imp = 0 in the baseline too")
    improved = judge("reverse", {"cs_exp": 1.0, "cs_imp": 1.0}, {"cs_exp": 1.0, "cs_imp": 0.0}, thresholds, 0.0)
    assert (improved.verdict, improved.improved) == ("improved", ("cs_imp",))
    crossed = judge("reverse", {"cs_exp": 0.0}, {"cs_exp": 1.0}, thresholds, 5.0)
    assert crossed.regressions == ("CS_exp regressed: 0 now, 1 in the baseline (threshold CS_exp >= 1 met in the "
                                   "baseline, missed now)",)
    moved = judge("reverse", {"cm": 0.25}, {"cm": 0.5}, thresholds, 0.1)
    assert moved.regressions == ("CM regressed: 0.25 now, 0.5 in the baseline (worse by 0.25, tolerance 0.1)",)
    assert judge("reverse", {"cm": 0.45}, {"cm": 0.5}, thresholds, 0.1).verdict == "passed"
    assert verdict_line("b.json", ["regressed", "known", "known", None, "passed", "new"], errors=1) == \
        "baseline b.json: 1 regressed, 2 known failures, 1 passed, 1 new, 1 error"
    assert verdict_line("b.json", [], errors=0) == "baseline b.json: no cases"


@given(st.text())
def test_a_safe_name_is_one_path_component_below_its_folder(text: str):
    name = safe_name(text)
    assert name and "/" not in name and "\\" not in name and not name.startswith(".")
    assert re.fullmatch(r"[A-Za-z0-9_.-]+", name)


def test_the_default_path_names_model_and_method(tmp_path: Path):
    assert default_path(tmp_path, "HuggingFaceTB/SmolLM2-135M", "memit-mle") == \
        tmp_path / ".kedit" / "baselines" / "HuggingFaceTB_SmolLM2-135M" / "memit-mle.json"
    assert default_path(tmp_path, "../models/tiny", "ft").parent.parent == tmp_path / ".kedit" / "baselines"


# --- the file ---------------------------------------------------------------------------------

PROVENANCE: dict[str, Any] = {name: None for name in PROVENANCE_FIELDS} | {"model": "m", "method": "ft", "hparams": {"lr": 0.1},
                                                                          "thresholds": ["cs>=1.0"], DATA_FILES: {}}


def case(split: str, index: int, **metrics: float) -> CaseRecord:
    record = CaseRecord(f"{split}-{index:04d}", split, "P1", None, "m", "ft", metrics=dict(metrics),
                        timings={"edit": 1.5}, verdict="known", outcome="xfailed", failures=["CS_imp = 0: ..."],
                        failed_metrics=["cs_imp"])
    return record


def test_a_baseline_reads_back_without_timings_or_verdicts(tmp_path: Path):
    path = tmp_path / "b.json"
    path.write_text(baseline_text(PROVENANCE, [case("reverse", 1, cs_imp=0.0), case("coverage", 0, cs=1.0)]))
    baseline = read_baseline(path)
    assert baseline.provenance == PROVENANCE
    assert list(baseline.cases) == [("coverage", "coverage-0000"), ("reverse", "reverse-0001")]
    record = baseline.cases["reverse", "reverse-0001"]
    assert (record.outcome, record.timings, record.verdict, record.metrics) == ("failed", {}, None, {"cs_imp": 0.0})
    assert baseline.metrics(("reverse", "reverse-0001")) == {"cs_imp": 0.0}
    assert baseline.metrics(("reverse", "reverse-0002")) is None
    assert sum(line.startswith(' {"arity": ') for line in path.read_text().splitlines()) == 2  # a case a line


def test_a_stream_keeps_its_curve_in_the_baseline_and_is_judged_on_its_final_metrics(tmp_path: Path):
    curve = {"schedule": {"edits": 20, "batch": 1, "every": 10, "scheme": "both"},
             "checkpoints": [{"edits": 10, "es": 1.0, "loc": 0.8, "ppl": 1.1}, {"edits": 20, "es": 0.9, "loc": 0.6, "ppl": 1.2}],
             "batches": [{"edits": n, "norm": n / 10, "norms": {"w": n / 10}} for n in range(1, 21)]}
    before = {"es": 0.9, "loc": 0.6, "ppl": 1.2, "norm": 2.0, "collapse_at": 20.0}
    record = CaseRecord("sequential-0000", "sequential", "stream", None, "m", "rome", metrics=before, curve=curve,
                        timings={"edit": 1.5})
    path = tmp_path / "b.json"
    path.write_text(baseline_text(PROVENANCE, [record]))
    kept = read_baseline(path).cases["sequential", "sequential-0000"]
    assert (kept.curve, kept.timings, kept.metrics) == (curve, {}, before)
    thresholds = THRESHOLDS.for_split("sequential")  # es>=0.9, ppl<=1.5 by default
    assert judge("sequential", {**before, "norm": 2.0 + 1e-6}, kept.metrics, thresholds, 1e-4).verdict == "passed"
    worse = judge("sequential", {**before, "ppl": 1.6, "collapse_at": 10.0}, kept.metrics, thresholds, 1e-4)
    assert worse.regressed == ("ppl", "collapse_at") and worse.regressions == (
        "PPL ratio regressed: 1.6 now, 1.2 in the baseline (threshold PPL ratio <= 1.5 met in the baseline, missed now)",
        "Collapse at regressed: 10 now, 20 in the baseline (worse by 10, tolerance 0.0001)")


@pytest.mark.parametrize(("text", "words"), [
    ("{", "not valid JSON"),
    ("[]", "must be a JSON object"),
    ('{"format": 2}', "field 'format' must be 1, got 2"),
    ('{"format": 1, "provenance": {}}', "field 'provenance.model' is missing"),
    (f'{{"format": 1, "provenance": {json.dumps({k: v for k, v in PROVENANCE.items() if k != DATA_FILES})}}}',
     f"field 'provenance.{DATA_FILES}' is missing"),
    ('{"format": 1, "provenance": PROV}', "field 'cases' must be a list"),
    ('{"format": 1, "provenance": PROV, "cases": [{"case_id": "x", "split": "nowhere"}]}', "case 0: field 'split'"),
])
def test_a_bad_baseline_is_one_line_naming_the_file(tmp_path: Path, text: str, words: str):
    path = tmp_path / "b.json"
    path.write_text(text.replace("PROV", json.dumps(PROVENANCE)))
    with pytest.raises(BaselineError) as caught:
        read_baseline(path)
    message = str(caught.value)
    assert words in message and str(path) in message and "\n" not in message


def test_a_baseline_made_by_an_earlier_version_judges_a_run_of_a_later_one_that_measures_the_same(tmp_path: Path):
    path = tmp_path / "b.json"
    made = PROVENANCE | {"package_version": "0.1.0", "protocol_version": 1, "probe_version": 2}
    path.write_text(baseline_text(made, [case("reverse", 1, cs_imp=0.0)]))
    baseline = read_baseline(path)
    upgraded = made | {"package_version": "0.2.0"}
    assert baseline_difference(baseline, upgraded) is None
    assert version_note(baseline, made) is None and version_note(baseline, made | {"package_version": None}) is None
    note = version_note(baseline, upgraded)
    assert note is not None and "\n" not in note
    assert note.startswith(f"baseline {path} was made by pytest-kedit 0.1.0, this run by 0.2.0;")
    assert "protocol version 1, probe version 2" in note
    for field in ("protocol_version", "probe_version"):  # what a case measures is still matched
        assert baseline_difference(baseline, upgraded | {field: 3}) == f"{field}: {made[field]!r} recorded, 3 now"
    written, line = update_baseline(path, upgraded, [case("reverse", 2, cs_imp=1.0)], True, 1, 1)
    assert written and line.endswith("updated: 1 cases from this run, 1 kept; 1 added")
    assert read_baseline(path).provenance["package_version"] == "0.2.0"


def test_a_missing_baseline_says_how_to_create_it(tmp_path: Path):
    with pytest.raises(BaselineError, match=r"b\.json does not exist; create it with --kedit-baseline-update$"):
        read_baseline(tmp_path / "b.json")


def test_a_case_listed_twice_is_an_error(tmp_path: Path):
    path = tmp_path / "b.json"
    path.write_text(baseline_text(PROVENANCE, [case("reverse", 1)]).replace("]\n}", "]\n}").replace(
        ' ]\n}', ',\n ' + CaseRecord("reverse-0001", "reverse", None, None, "m", "ft").to_json() + '\n ]\n}'))
    with pytest.raises(BaselineError, match="case 1: reverse-0001 is listed twice"):
        read_baseline(path)


def test_updating_merges_same_provenance_replaces_other_and_keeps_it_from_a_partial_run(tmp_path: Path):
    path = tmp_path / "baselines" / "b.json"
    written, line = update_baseline(path, PROVENANCE, [case("reverse", 0), case("reverse", 1)], False, 2, 5)
    assert written and line.endswith("written: 2 cases (partial run: 2 of 5 cases)")
    written, line = update_baseline(path, PROVENANCE, [case("reverse", 1, cs_imp=1.0), case("easy", 0)], True, 2, 2)
    assert written and line.endswith("updated: 2 cases from this run, 1 kept; 1 changed, 1 added")
    cases = read_baseline(path).cases
    assert list(cases) == [("reverse", "reverse-0000"), ("reverse", "reverse-0001"), ("easy", "easy-0000")]
    assert cases["reverse", "reverse-0001"].metrics == {"cs_imp": 1.0}
    other = PROVENANCE | {"hparams": {"lr": 0.2}}
    before = path.read_text()
    written, line = update_baseline(path, other, [case("reverse", 0)], False, 1, 3)
    assert not written and path.read_text() == before
    assert line.endswith("not updated: this run is partial (1 of 3 cases) and the baseline differs (hparams.lr: 0.1 "
                         "recorded, 0.2 now); run every case to replace it")
    written, line = update_baseline(path, other, [case("reverse", 0)], True, 1, 1)
    assert written and line.endswith("replaced (hparams.lr: 0.1 recorded, 0.2 now): 1 cases; 2 dropped")
    assert list(read_baseline(path).cases) == [("reverse", "reverse-0000")]


def test_the_changes_of_an_update_count_cases_by_how_their_metrics_moved():
    before = {r.key: r for r in (case("reverse", 0, cs_imp=0.0), case("reverse", 1, cs_imp=1.0, cm=0.5),
                                 case("reverse", 2, cs_imp=1.0, cm=0.5), case("easy", 0, succ=1.0, d=0.1),
                                 case("easy", 1, succ=0.5))}
    after = {r.key: r for r in (case("reverse", 0, cs_imp=1.0),  # better
                                case("reverse", 1, cs_imp=1.0, cm=0.25),  # CM down: worse
                                case("reverse", 2, cs_imp=1.0, cm=0.5),  # the same
                                case("easy", 0, succ=1.0, d=0.05), case("hard", 0, succ=1.0))}  # D down: better; added
    changes = baseline_changes(before, after)
    assert changes == BaselineChanges(changed=3, improved=2, regressed=1, added=1, dropped=1)
    assert str(changes) == "3 changed (2 improved, 1 regressed), 1 added, 1 dropped"
    assert str(baseline_changes(after, after)) == "no case changed"


@given(st.lists(st.tuples(splits, st.integers(0, 3)), unique=True).flatmap(
    lambda keys: st.tuples(*(st.tuples(st.just(k), st.booleans(), st.booleans()) for k in keys))), st.data())
def test_the_changes_of_an_update_read_backwards_swap_added_and_dropped_and_keep_the_changed(
        cases: tuple[tuple[tuple[str, int], bool, bool], ...], data: st.DataObject):
    before, after = {}, {}
    for (split, index), in_before, in_after in cases:
        for side, present in ((before, in_before), (after, in_after)):
            if present:
                record = case(split, index, **data.draw(case_metrics(split)))
                side[record.key] = record
    forward, backward = baseline_changes(before, after), baseline_changes(after, before)
    assert (forward.added, forward.dropped) == (backward.dropped, backward.added)
    assert forward.changed == backward.changed <= len(before.keys() & after.keys())
    # a case that moved one way is improved one way and regressed the other; one that moved both ways regressed both ways
    assert forward.improved + forward.regressed == backward.improved + backward.regressed <= forward.changed
    assert forward.regressed >= backward.improved


def test_the_difference_skips_ignored_fields_and_before_loading_the_loaded_ones(tmp_path: Path):
    path = tmp_path / "b.json"
    path.write_text(baseline_text(PROVENANCE, []))
    baseline = read_baseline(path)
    other = PROVENANCE | {"hparams": {"lr": 0.2}, "model_fingerprint": "x"}
    assert baseline_difference(baseline, other) == "model_fingerprint: None recorded, 'x' now"
    assert baseline_difference(baseline, other, ["model_fingerprint"]) == "hparams.lr: 0.1 recorded, 0.2 now"
    assert baseline_difference(baseline, other, loaded=False) is None
    assert baseline_difference(baseline, PROVENANCE | {"thresholds": []}) is None
    assert baseline_difference(baseline, PROVENANCE | {"seed": 1}, loaded=False) == "seed: None recorded, 1 now"


def test_an_xfailed_record_reads_back():
    record = CaseRecord("reverse-0000", "reverse", "P1", None, "m", "ft", outcome="xfailed", verdict="known",
                        regressions=["x"])
    assert CaseRecord.from_json(record.to_json()) == record
    assert BASELINE_FORMAT == 1


# --- end to end, on a tiny model --------------------------------------------------------------

@pytest.fixture
def project(kedit_project: Callable[..., pytest.Pytester]) -> pytest.Pytester:
    return kedit_project(kedit_limit=2)


def run(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    return pytester.runpytest_subprocess("-p", "no:randomly", "-p", "no:cacheprovider", *args)


def one_line(result: pytest.RunResult, prefix: str) -> str:
    lines = [line for line in result.outlines + result.errlines if prefix in line]
    assert len(lines) == 1, result.stdout.str() + result.stderr.str()
    return lines[0]


@pytest.mark.slow
def test_a_missing_baseline_is_a_usage_error_saying_how_to_create_it(project: pytest.Pytester):
    result = run(project, "--kedit-baseline")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    line = one_line(result, "does not exist")
    assert re.search(r"kedit: baseline \S+/\.kedit/baselines/\S+/ft\.json does not exist; "
                     r"create it with --kedit-baseline-update", line)
    assert "Traceback" not in result.stderr.str()
    result = run(project, "--kedit-gate=easy.ir<=baseline+2")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "needs one: add --kedit-baseline" in one_line(result, "kedit:")


@pytest.mark.slow
def test_update_then_gate_then_a_changed_or_worse_run(project: pytest.Pytester, tmp_path: Path):
    baseline = project.path / ".kedit" / "baselines"
    updated = run(project, "--kedit-baseline-update", "--kedit-gate=reverse.cs_exp>=baseline")
    assert updated.ret == pytest.ExitCode.OK, updated.stdout.str()
    assert "written: 10 cases" in one_line(updated, "baseline .kedit/baselines/")
    (path,) = baseline.rglob("ft.json")
    data = json.loads(path.read_text())
    assert data["format"] == 1 and len(data["cases"]) == 10
    assert data["provenance"]["hparams"]["num_steps"] == 3 and data["provenance"]["model_fingerprint"]
    known = sum(case["outcome"] == "failed" for case in data["cases"])
    assert "not checked" in updated.stdout.str()

    same = run(project, "--kedit-baseline", "--kedit-gate=reverse.cs_exp>=baseline", "--kedit-gate=easy.ir<=baseline")
    assert same.ret == pytest.ExitCode.OK, same.stdout.str()
    same.assert_outcomes(passed=10 - known, xfailed=known)
    assert f"{known} known failures, {10 - known} passed" in one_line(same, "baseline .kedit/baselines/")
    assert "all 2 gates held" in same.stdout.str()

    changed_yaml = tmp_path / "ft-changed.yaml"
    changed_yaml.write_text("layers: [1]\nnum_steps: 3\nlr: 2.0e-2\n")
    changed = run(project, "--kedit-baseline", f"--kedit-hparams={changed_yaml}")
    assert changed.ret == pytest.ExitCode.USAGE_ERROR
    line = one_line(changed, "does not match this run")
    assert "hparams.lr: 0.01 recorded, 0.02 now; re-create it with --kedit-baseline-update" in line
    assert "--kedit-baseline-ignore=hparams" in line

    worse_yaml = tmp_path / "ft-worse.yaml"
    worse_yaml.write_text("layers: [1]\nnum_steps: 1\nlr: 1.0e-4\n")
    worse = run(project, "--kedit-baseline", f"--kedit-hparams={worse_yaml}", "--kedit-baseline-ignore=hparams",
                "--kedit-gate=easy.succ>=baseline-10", "--kedit-report=report")
    assert worse.ret == pytest.ExitCode.TESTS_FAILED
    out = worse.stdout.str()
    assert re.search(r"Succ regressed: 0\.5 now, 1 in the baseline \(threshold Succ >= 1 met in the baseline", out)
    assert re.search(r"\| `easy\.succ>=baseline-10` \| failed .* \[-50\.00, -50\.00\]", out)
    records = [json.loads(line) for line in (project.path / "report" / "cases.jsonl").read_text().splitlines()]
    regressed = [r for r in records if r["verdict"] == "regressed"]
    assert regressed and all(r["outcome"] == "failed" and r["regressions"] for r in regressed)
    assert f"{len(regressed)} regressed" in one_line(worse, "baseline .kedit/baselines/")


@pytest.mark.slow
def test_a_baseline_written_by_one_version_gates_a_run_of_the_next(project: pytest.Pytester):
    updated = run(project, "--kedit-update-baseline")
    assert updated.ret == pytest.ExitCode.OK, updated.stdout.str()
    (path,) = (project.path / ".kedit" / "baselines").rglob("ft.json")
    data = json.loads(path.read_text())
    now = data["provenance"]["package_version"]
    assert now and data["provenance"]["probe_version"] == 2
    data["provenance"]["package_version"] = "0.0.1"  # as the release before this one wrote it
    path.write_text(json.dumps(data))
    gated = run(project, "--kedit-baseline")
    assert gated.ret == pytest.ExitCode.OK, gated.stdout.str()
    line = one_line(gated, "was made by pytest-kedit")
    assert f"was made by pytest-kedit 0.0.1, this run by {now}; the cases measure the same" in line


@pytest.mark.parametrize(("args", "words"), [
    (["--kedit-baseline-tolerance=-0.1"], "--kedit-baseline-tolerance: must be a finite number >= 0, got '-0.1'"),
    (["--kedit-tolerance=nan"], "--kedit-baseline-tolerance: must be a finite number >= 0, got 'nan'"),
    (["--kedit-baseline-tolerance=a bit"], "--kedit-baseline-tolerance: 'a bit' is not a number"),
    (["--kedit-baseline-ignore=hparams,weights"], "--kedit-baseline-ignore: unknown field 'weights'; choose from model,"),
    (["--kedit-gate=reverse.cs_imp>=fifty"], "--kedit-gate 'reverse.cs_imp>=fifty': 'fifty' is not a number"),
    (["--kedit-baseline", "."], "--kedit-baseline: . is a folder, not a baseline file; for the default file write "
                                "--kedit-baseline=default or put --kedit-baseline after the test paths"),
])
def test_bad_baseline_options_are_one_line_usage_errors(pytester: pytest.Pytester, args: list[str], words: str):
    result = pytester.runpytest_inprocess(*args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert f"kedit: {words}" in result.stderr.str()
