"""``kedit baseline`` and ``kedit gate`` on hand-made report folders: a baseline from a run or from
its shards, the update policy, partial runs refused, and a run (or its shards) gated against a
baseline as the plugin gates a session."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from run_summaries import run_summary

from pytest_kedit.ci.baseline import read_baseline
from pytest_kedit.ci.step_summary import STEP_SUMMARY_VARIABLE
from pytest_kedit.cli.main import build_parser, main
from pytest_kedit.dataset.shards import Shard, deal
from pytest_kedit.results.record import CaseRecord
from pytest_kedit.results.run_files import write_report
from pytest_kedit.results.summary import RunData, RunSummary
from pytest_kedit.run.options import OPTIONS

FILES = {"reverse_edit.json": "a" * 64, "conflict_prompts.json": "b" * 64, "easy.json": "c" * 64,
         "round_prompts.json": "d" * 64}


def record(case_id: str, relation: str = "P1", method: str = "ft", outcome: str = "passed", **metrics: float) -> CaseRecord:
    return CaseRecord(case_id=case_id, split=case_id.split("-")[0], relation=relation, arity=None, model="m",
                      method=method, outcome=outcome, metrics=metrics,
                      error="RuntimeError: boom" if outcome == "error" else None)


def summary(files: dict[str, str] = FILES, **changes: Any) -> RunSummary:
    return run_summary(**{"hparams": {"lr": 0.1}, "data": RunData("x", "all", files),
                          "thresholds": ["cs_exp>=1", "cs_imp>=1", "succ>=1", "fr<=0"], **changes})


#: The baseline run: reverse cases pass or miss CS_imp; easy cases with a continuous IR.
BASE = [record(f"reverse-{i:04d}", f"P{i % 3}", cs_exp=1.0, cs_imp=float(i % 2), cm=0.5) for i in range(8)] + [
    record(f"easy-{i:04d}", "P1", succ=1.0, d=0.1, ir=0.2, fr=0.0) for i in range(6)]
#: The candidate: reverse-0001 loses CS_exp, easy-0002's IR rises by 0.3, reverse-0002 gains CS_imp.
WORSE = [record(r.case_id, str(r.relation), **{**r.metrics, **changes}) for r, changes in zip(BASE, [
    {}, {"cs_exp": 0.0}, {"cs_imp": 1.0}, *[{}] * 7, {"ir": 0.5}, *[{}] * 3])]


def write(folder: Path, records: list[CaseRecord], **changes: Any) -> Path:
    done = len(records)
    write_report(folder, summary(cases_done=done, cases_expected=done, **changes), records)
    return folder


def shards(folder: Path, records: list[CaseRecord], count: int = 2) -> list[Path]:
    """The run ``records`` written as ``count`` shard folders, dealt as --kedit-shard deals them."""
    out = []
    for index in range(1, count + 1):
        shard = Shard(index, count)
        mine = [r for split in ("reverse", "easy") for group in [[r for r in records if r.split == split]]
                for r in [group[p] for p in deal([(str(r.relation), r.case_id) for r in group], shard)]]
        out.append(write(folder / f"shard-{index}", mine, shard=shard))
    return out


def test_a_baseline_from_a_run_goes_to_the_default_path_with_the_runs_provenance(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    run = write(tmp_path / "run", BASE)
    monkeypatch.chdir(tmp_path)
    assert main(["baseline", str(run)]) == 0
    assert capsys.readouterr().out == "baseline .kedit/baselines/m/ft.json written: 14 cases\n"
    baseline = read_baseline(tmp_path / ".kedit" / "baselines" / "m" / "ft.json")
    assert baseline.provenance == RunSummary.from_json((run / "summary.json").read_text(), run).provenance()
    assert [record.metrics for record in baseline.cases.values()] == [r.metrics for r in BASE]


def test_gate_without_baseline_reads_the_default_file_of_the_runs_model_and_method(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    run = write(tmp_path / "run", BASE)
    monkeypatch.chdir(tmp_path)
    assert main(["gate", str(run)]) == 2
    assert "baseline .kedit/baselines/m/ft.json does not exist" in capsys.readouterr().err
    assert main(["baseline", str(run)]) == 0
    assert main(["gate", str(run)]) == 0
    assert "baseline .kedit/baselines/m/ft.json: " in capsys.readouterr().out


def test_a_baseline_from_shards_is_the_baseline_of_the_unsharded_run(tmp_path: Path) -> None:
    whole = write(tmp_path / "whole", BASE)
    assert main(["baseline", str(whole), "--baseline", str(tmp_path / "whole.json")]) == 0
    assert main(["baseline", *map(str, reversed(shards(tmp_path, BASE, 3))), "--baseline", str(tmp_path / "shards.json")]) == 0
    assert (tmp_path / "shards.json").read_text() == (tmp_path / "whole.json").read_text()


def test_a_partial_run_is_refused_unless_partial(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    first, _, third = shards(tmp_path, BASE, 3)
    out = tmp_path / "b.json"
    assert main(["baseline", str(first), str(third), "--baseline", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "partial: shard 2/3 missing (merged 1/3, 3/3)" in err and "--partial" in err
    assert not out.exists()
    assert main(["baseline", str(first), str(third), "--baseline", str(out), "--partial"]) == 0
    assert "(partial run:" in capsys.readouterr().out and out.exists()


def test_runs_of_several_methods_or_made_differently_are_one_line_errors(tmp_path: Path,
                                                                         capsys: pytest.CaptureFixture[str]) -> None:
    ft = write(tmp_path / "ft", BASE[:8])
    rome = write(tmp_path / "rome", [record(r.case_id, method="rome", **r.metrics) for r in BASE[:8]], method="rome")
    assert main(["baseline", str(ft), str(rome)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "the folders hold 2 runs, m / ft" in err and "one model × method" in err
    other = write(tmp_path / "other", BASE[8:], hparams={"lr": 0.2})
    assert main(["gate", str(ft), str(other), "--baseline", str(tmp_path / "x.json")]) == 2
    assert "are not parts of one run: hparams.lr: 0.1 recorded, 0.2 now" in capsys.readouterr().err


def test_a_baseline_of_other_splits_of_the_same_data_is_updated_not_replaced(tmp_path: Path,
                                                                            capsys: pytest.CaptureFixture[str]) -> None:
    reverse_files = {name: FILES[name] for name in ("reverse_edit.json", "conflict_prompts.json")}
    easy_files = {name: FILES[name] for name in ("easy.json", "round_prompts.json")}
    out = tmp_path / "b.json"
    assert main(["baseline", str(write(tmp_path / "r", BASE[:8], files=reverse_files)), "--baseline", str(out)]) == 0
    assert main(["baseline", str(write(tmp_path / "e", BASE[8:], files=easy_files)), "--baseline", str(out)]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == "baseline " + str(out) + " updated: 6 cases from this run, 8 kept; 6 added"
    assert read_baseline(out).provenance["data_files"] == FILES
    changed = {**easy_files, "easy.json": "e" * 64}
    assert main(["baseline", str(write(tmp_path / "e2", BASE[8:], files=changed)), "--baseline", str(out)]) == 0
    assert "replaced (data_fingerprint: easy.json differs (sha256 cccccccccccc recorded, eeeeeeeeeeee now))" in \
        capsys.readouterr().out


@pytest.fixture
def baseline(tmp_path: Path) -> Path:
    path = tmp_path / "baseline.json"
    assert main(["baseline", str(write(tmp_path / "base", BASE)), "--baseline", str(path)]) == 0
    return path


GATES = ["--gate=reverse.cs_exp>=baseline-5", "--gate=easy.ir<=baseline", "--gate=reverse.cs_imp>=50"]


def test_the_same_run_passes_every_case_and_gate(tmp_path: Path, baseline: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()
    assert main(["gate", str(tmp_path / "base"), "--baseline", str(baseline), *GATES]) == 0
    out = capsys.readouterr().out
    assert out.startswith("## kedit gate: m × ft\n\n")
    assert f"baseline {baseline}: 4 known failures, 10 passed" in out
    assert "Regressed cases" not in out and "Gates: all 3 gates held" in out


def test_a_worse_run_lists_its_regressed_cases_and_failed_gates(tmp_path: Path, baseline: Path,
                                                                capsys: pytest.CaptureFixture[str],
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    step_summary = tmp_path / "step_summary.md"
    monkeypatch.setenv(STEP_SUMMARY_VARIABLE, str(step_summary))
    capsys.readouterr()
    worse = write(tmp_path / "worse", WORSE)
    assert main(["gate", str(worse), "--baseline", str(baseline), *GATES, "--gate-mode=point"]) == 1
    out = capsys.readouterr().out
    assert f"baseline {baseline}: 2 regressed, 3 known failures, 1 improved, 8 passed" in out
    assert "| reverse-0001 | CS_exp   |          1 |     0 |          1 |" in out
    assert "| easy-0002    | IR       |        0.2 |   0.5 |        0.3 |" in out
    assert "Gates: 2 of 3 gates failed" in out and "| `reverse.cs_exp>=baseline-5` | failed" in out
    assert step_summary.read_text() == out.rstrip("\n") + "\n\n"
    # IR worse by 0.3: within a tolerance of 0.5, so only the CS_exp flip regresses
    assert main(["gate", str(worse), "--baseline", str(baseline), "--baseline-tolerance=0.5"]) == 1
    assert "1 regressed" in capsys.readouterr().out


def test_gating_shards_is_gating_the_unsharded_run(tmp_path: Path, baseline: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()
    assert main(["gate", str(write(tmp_path / "worse", WORSE)), "--baseline", str(baseline), *GATES]) == 1
    whole = capsys.readouterr().out
    assert main(["gate", *map(str, shards(tmp_path / "sharded", WORSE)), "--baseline", str(baseline), *GATES]) == 1
    assert capsys.readouterr().out == whole


def test_an_error_case_fails_the_gate(tmp_path: Path, baseline: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = write(tmp_path / "errors", [*BASE[:-1], record(BASE[-1].case_id, outcome="error")])
    assert main(["gate", str(run), "--baseline", str(baseline)]) == 1
    assert "4 known failures, 9 passed, 1 error" in capsys.readouterr().out


def test_a_run_made_otherwise_is_refused_unless_the_field_is_ignored(tmp_path: Path, baseline: Path,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    changed = write(tmp_path / "changed", BASE, hparams={"lr": 0.2})
    assert main(["gate", str(changed), "--baseline", str(baseline)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "does not match this run: hparams.lr: 0.1 recorded, 0.2 now" in err
    assert "kedit baseline" in err and "--baseline-ignore=hparams" in err
    assert main(["gate", str(changed), "--baseline", str(baseline), "--baseline-ignore=hparams"]) == 0


@pytest.mark.parametrize(("args", "words"), [
    (["--gate=reverse.cs_imp>=fifty"], "--gate 'reverse.cs_imp>=fifty': 'fifty' is not a number"),
    (["--baseline-tolerance=-1"], "--baseline-tolerance: must be a finite number >= 0, got '-1'"),
    (["--baseline-ignore=weights"], "--baseline-ignore: unknown field 'weights'"),
    (["--gate-mode=maybe"], "argument --gate-mode: invalid choice: 'maybe'"),
    (["--baseline=nowhere.json"], "baseline nowhere.json does not exist; create it with --kedit-baseline-update"),
])
def test_usage_errors_are_one_line(tmp_path: Path, baseline: Path, capsys: pytest.CaptureFixture[str],
                                   args: list[str], words: str) -> None:
    capsys.readouterr()
    assert main(["gate", str(tmp_path / "base"), "--baseline", str(baseline), *args]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and words in err


# --- end to end, on a tiny model --------------------------------------------------------------

@pytest.mark.slow
def test_a_baseline_made_from_real_shards_gates_the_plugins_run_and_the_shards(
        kedit_project: Callable[..., pytest.Pytester], monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    pytester = kedit_project(kedit_limit=3)
    args = ("-p", "no:randomly", "-p", "no:cacheprovider", "--kedit-split=reverse,easy")
    for index in (1, 2):
        pytester.runpytest_subprocess(*args, f"--kedit-shard={index}/2", f"--kedit-report=shard-{index}")
    monkeypatch.chdir(pytester.path)
    assert main(["baseline", "shard-1", "shard-2"]) == 0
    assert capsys.readouterr().out.endswith("written: 6 cases\n")
    # the plugin accepts the baseline (the provenance in summary.json is the one it states) and
    # judges the unsharded run as the shards
    gated = pytester.runpytest_subprocess(*args, "--kedit-baseline", "--kedit-gate=easy.succ>=baseline")
    assert gated.ret == pytest.ExitCode.OK, gated.stdout.str() + gated.stderr.str()
    assert main(["gate", "shard-2", "shard-1", "--gate=easy.succ>=baseline"]) == 0  # the file kedit baseline wrote
    out = capsys.readouterr().out
    assert "regressed" not in out and "Gates: all 1 gates held" in out


def test_the_options_are_the_plugins_without_kedit_and_the_old_spellings_still_parse() -> None:
    parser = build_parser()
    new = ["--baseline", "b.json", "--gate=easy.fr<=baseline", "--gate-mode=point", "--baseline-tolerance=0.5",
           "--baseline-ignore=hparams"]
    gate = parser.parse_args(["gate", "run", *new])
    old = parser.parse_args(["gate", "run", "--baseline", "b.json", "--gate=easy.fr<=baseline", "--gate-mode=point",
                             "--tolerance=0.5", "--ignore=hparams"])
    assert vars(gate) == vars(old) and (gate.tolerance, gate.ignore) == ("0.5", "hparams")
    plugin = {f"--kedit-{option.name}" for option in OPTIONS}
    assert {"--kedit-" + arg.split("=")[0].removeprefix("--") for arg in new if arg.startswith("--")} <= plugin
    made = parser.parse_args(["baseline", "run", "--baseline", "b.json"])
    assert vars(made) == vars(parser.parse_args(["baseline", "run", "--out", "b.json"])) and made.baseline == Path("b.json")
