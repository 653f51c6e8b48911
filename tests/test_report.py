"""Tables, report files, merging runs and the ``kedit report`` command."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pytest

from pytest_kedit import report
from pytest_kedit.cli import main
from pytest_kedit.errors import KeditError

MODEL = "smollm2-135m"


def record(case_id: str, outcome: str = "passed", relation: str = "P1", failures: tuple[str, ...] = (),
           method: str = "ft", **metrics: float) -> dict[str, Any]:
    split = case_id.split("-")[0]
    return {
        "case_id": case_id, "split": split, "relation": relation, "arity": None,
        "model": MODEL, "method": method, "outcome": outcome,
        "metrics": {} if outcome == "error" and not metrics else metrics,
        "probabilities": {}, "failures": list(failures),
        "error": "RuntimeError: boom" if outcome == "error" else None,
        "timings": {"edit": 0.1, "probe": 0.1, "restore": 0.0},
        "nodeid": f"suites/test_x.py::test_x[{case_id}]",
    }


def summary(method: str = "ft", scaling: str = "paper", model: str = MODEL) -> dict[str, Any]:
    return {
        "model": model, "method": method, "hparams": {"lr": 0.1},
        "data": {"source": "builtin", "fingerprint": "abc"}, "distortion_scaling": scaling, "seed": 0,
        "thresholds": {"cs_exp": "CS_exp >= 1", "cs_imp": "CS_imp >= 1"},
        "versions": {"pytest_kedit": "0.1.0"},
        "timings": {"model_load": 2.0, "edit": 5.0, "probe": 2.0, "restore": 0.5, "total": 10.0},
    }


REVERSE = [
    record("reverse-0000", cs_exp=1, cs_imp=1, cm=0.5),
    record("reverse-0001", "failed", failures=("CS_imp = 0: p(k_n)=0.01 <= p(k_o)=0.03",), cs_exp=1, cs_imp=0, cm=0.25),
    record("reverse-0002", "error", cs_exp=0, cs_imp=0, cm=-1.0),  # metrics of an error case never count
]
EASY = [
    record("easy-0000", succ=1, d=0.02, ir=0.5, fr=0),
    record("easy-0001", "failed", failures=("FR = 1: IR=1",), succ=0.5, d=0.04, ir=1.0, fr=1),
]


def cells(table: str, first: str) -> list[str]:
    """The cells of the Markdown row whose first cell is ``first``."""
    for line in table.splitlines():
        parts = [part.strip() for part in line.strip().strip("|").split("|")]
        if line.startswith("|") and parts[0] == first:
            return parts
    raise AssertionError(f"no row {first!r} in:\n{table}")


def write_run(directory: Path, records: list[dict[str, Any]], **kwargs: Any) -> Path:
    report.write_report(directory, summary(**kwargs), records)
    return directory


def merge_runs(directories: list[Path]) -> tuple[str, str]:
    return report.merge_tables(report.load_runs(directories))


def section(text: str, title: str) -> str:
    """The part of ``text`` from the line ``title`` on."""
    return text[text.index("\n" + title + "\n") + 1:]


def test_aggregate_means_times_100_and_counts() -> None:
    result = report.aggregate(REVERSE + EASY)
    assert list(result) == ["reverse", "easy"]
    assert result["reverse"]["cs_exp"] == pytest.approx(100.0)
    assert result["reverse"]["cs_imp"] == pytest.approx(50.0)
    assert result["reverse"]["cm"] == pytest.approx(37.5)
    assert result["easy"]["d"] == pytest.approx(3.0)
    assert result["easy"]["succ"] == pytest.approx(75.0)
    assert {k: result["reverse"][k] for k in report.COUNT_KEYS} == {"cases": 3, "passed": 1, "failed": 1, "error": 1}


def test_error_cases_only_count_as_errors() -> None:
    result = report.aggregate([record("composite-0000", "error"), record("composite-0001", "error", cm=-1.0)])
    assert result == {"composite": {"cases": 2, "passed": 0, "failed": 0, "error": 2}}
    row = cells(report.table1([(MODEL, "ft", result)]), "ft")
    assert row[-4:] == ["–"] * 4


def test_tables_do_not_depend_on_record_order() -> None:
    rng = random.Random(7)
    records = [record(f"{split}-{i:04d}", rng.choice(["passed", "failed", "error"]), relation=f"P{i % 3}",
                      **{metric: rng.random() * 3 - 1 for metric in report.SPLIT_METRICS[split]})
               for split in report.SPLIT_METRICS for i in range(12)]
    expected = (report.aggregate(records), report.run_tables(summary(), records),
                report.relation_table(records), report.threshold_summary(records))
    for _ in range(3):
        rng.shuffle(records)
        assert (report.aggregate(records), report.run_tables(summary(), records),
                report.relation_table(records), report.threshold_summary(records)) == expected


def test_table1_layout_grouped_by_model_with_dash_for_missing_splits() -> None:
    table = report.table1([(MODEL, "ft", report.aggregate(REVERSE))])
    header = cells(table, "Method")
    assert header == ["Method", "Single Succ", "Coverage CS", "Coverage CM", "Reverse CS_exp", "Reverse CS_imp",
                      "Reverse CM", "Composite CS_exp", "Composite CS_imp", "Composite CM", "Composite TFD"]
    assert cells(table, f"*{MODEL}*")[1:] == [""] * 10
    assert cells(table, "ft")[1:] == ["–", "–", "–", "100.00", "50.00", "37.50", "–", "–", "–", "–"]
    assert table.splitlines()[-1] == ("n cases per split (errors excluded from the means): "
                                      "coverage –, reverse 3 (1 error), composite –")


def test_table2_layout_and_scaling_line() -> None:
    table = report.table2([(MODEL, "ft", report.aggregate(EASY))], "upstream")
    assert cells(table, "Method")[1:] == ["EASY Succ", "EASY D", "EASY IR", "EASY FR",
                                          "HARD Succ", "HARD D", "HARD IR", "HARD FR"]
    assert cells(table, "ft")[1:] == ["75.00", "3.00", "75.00", "50.00", "–", "–", "–", "–"]
    assert "easy 2, hard –" in table
    assert table.splitlines()[-1].startswith("D scaling: upstream JS/|Obj|")


def test_threshold_summary_counts_each_threshold() -> None:
    text = report.threshold_summary(REVERSE + EASY, thresholds={"cs_exp", "cs_imp", "fr"})
    assert cells(text, "reverse")[1:] == ["3", "1", "1", "1", "CS_exp 2/2, CS_imp 1/2"]
    assert cells(text, "easy")[1:] == ["2", "1", "1", "0", "FR 1/2"]
    assert cells(text, "all")[1:5] == ["5", "2", "2", "1"]
    assert "CM" in cells(report.threshold_summary(REVERSE), "reverse")[-1]  # no filter: every metric


def test_timing_summary_shares_and_per_case() -> None:
    text = report.timing_summary({**summary(), "counts": {"cases": 4}})
    assert cells(text, "edits")[1:] == ["5.00", "50.0%", "1.25"]
    assert cells(text, "other")[1:] == ["0.50", "5.0%", "0.12"]
    assert cells(text, "total")[1:] == ["10.00", "100.0%", "2.50"]
    parallel = report.timing_summary({"timings": {"edit": 8.0, "probe": 4.0, "total": 6.0}})
    assert cells(parallel, "edits")[1:] == ["8.00", "66.7%", "–"]
    assert "parallel workers" in parallel


def test_table1_has_an_interval_table_with_the_same_columns_and_the_method() -> None:
    records = REVERSE + [record(f"reverse-{i:04d}", cs_exp=i % 2, cs_imp=1, cm=i / 10) for i in range(3, 12)]
    table = report.run_tables(summary(), records)[0]
    point, intervals = table.split("95% confidence intervals of Table 1")
    assert point == report.table1([(MODEL, "ft", report.aggregate(records))]) + "\n\n"  # the paper's layout
    assert cells(intervals, "Method") == cells(point, "Method")
    row = cells(intervals, "ft")
    bounds = report.intervals(records)["reverse"]
    assert row[4:7] == [f"[{bounds[m][0]:.1f}, {bounds[m][1]:.1f}]" for m in ("cs_exp", "cs_imp", "cm")]
    assert row[1:4] == ["–"] * 3 and row[7:] == ["–"] * 4
    low, high = bounds["cs_exp"]
    assert low < report.aggregate(records)["reverse"]["cs_exp"] < high
    assert table.splitlines()[-1] == report.INTERVAL_METHOD
    assert "percentile bootstrap" in report.INTERVAL_METHOD and "1000 resamples" in report.INTERVAL_METHOD
    assert "seed 0" in report.INTERVAL_METHOD and "95%" in report.INTERVAL_METHOD


def test_table2_interval_table_keeps_the_scaling_marks(tmp_path: Path) -> None:
    paper = write_run(tmp_path / "p", EASY, method="ft", scaling="paper")
    upstream = write_run(tmp_path / "u", [dict(r, method="rome") for r in EASY], method="rome", scaling="upstream")
    intervals = section(merge_runs([paper, upstream])[1], "95% confidence intervals of Table 2")
    assert cells(intervals, "ft (D: paper)")[2] == "[2.0, 4.0]"
    assert cells(intervals, "rome (D: upstream)")[5:] == ["–"] * 4


def test_relation_table_has_mean_and_interval_per_relation_and_arity() -> None:
    records = [record("reverse-0000", relation="P17", cs_exp=1, cs_imp=1, cm=0.5),
               record("reverse-0001", relation="P17", cs_exp=0, cs_imp=1, cm=0.5),
               record("reverse-0002", relation="P131", cs_exp=1, cs_imp=0, cm=0.1),
               record("reverse-0003", "error", relation="P9")]
    text = report.relation_table(records)
    row = cells(text, "P17")
    assert row[1] == "2"
    assert row[2].startswith("50.00 [") and row[3] == "100.00 [100.0, 100.0]"
    assert cells(text, "P131")[1:3] == ["1", "100.00 [100.0, 100.0]"]
    assert text.index("| P17 |") < text.index("| P131 |")  # natural order
    assert "| P9 |" not in text and "by arity" not in text  # errors left out; arity is for RoundEdit
    assert text.splitlines()[-1] == report.INTERVAL_METHOD
    easy = [dict(record(f"easy-{i:04d}", relation="P1", succ=1, d=0.01 * i, ir=0, fr=0), arity=arity)
            for i, arity in enumerate(["1-2@P1", "1-10@P1", "1-2@P1"])]
    text = report.relation_table(easy, scaling="upstream")
    arity = section(text, "easy by arity (1-N: N true objects)")
    assert cells(arity, "1-2")[1:3] == ["2", "100.00 [100.0, 100.0]"] and cells(arity, "1-10")[1] == "1"
    assert arity.index("| 1-2 |") < arity.index("| 1-10 |")
    assert text.splitlines()[-1].startswith("D scaling: upstream")
    assert report.relation_table([record("coverage-0000", "error")]) == "no cases"


def test_case_log_writes_flushed_lines_and_starts_a_new_run_clean(tmp_path: Path) -> None:
    (tmp_path / "run").mkdir()
    with report.CaseLog(tmp_path / "run") as log:
        log.append(REVERSE[1])
        log.append(REVERSE[0])
        lines = (tmp_path / "run" / "cases.jsonl").read_text().splitlines()  # readable before close
        assert [json.loads(line) for line in lines] == [REVERSE[1], REVERSE[0]]
    (tmp_path / "run" / "summary.json").write_text(json.dumps(summary()))
    with report.CaseLog(tmp_path / "run") as log:
        assert not (tmp_path / "run" / "summary.json").exists()  # the old run's summary is gone
        log.append(REVERSE[2])
    (tmp_path / "run" / "summary.json").write_text(json.dumps(summary()))
    assert report.load_run(tmp_path / "run")[1] == [REVERSE[2]]


def test_write_report_load_run_round_trip(tmp_path: Path) -> None:
    records = list(reversed(REVERSE + EASY))
    run = report.write_report(tmp_path / "out", summary(), records)
    written = run.summary
    loaded_summary, loaded = report.load_run(tmp_path / "out")
    assert loaded_summary == written
    assert written["counts"]["splits"]["reverse"]["thresholds"] == {"cs_exp": {"checked": 2, "passed": 2},
                                                                   "cs_imp": {"checked": 2, "passed": 1}}
    assert written["counts"]["cases"] == 5
    assert [r["case_id"] for r in loaded] == sorted(r["case_id"] for r in records)
    assert loaded == report.sorted_records(records)
    text = (tmp_path / "out" / "summary.json").read_text()
    assert text == json.dumps(written, sort_keys=True, indent=2) + "\n"
    table1_md, table2_md = report.run_tables(summary(), records)
    assert (run.table1, run.table2) == (table1_md, table2_md)
    assert (tmp_path / "out" / "table1.md").read_text() == table1_md + "\n"
    assert (tmp_path / "out" / "table2.md").read_text() == table2_md + "\n"
    assert (tmp_path / "out" / "relations.md").read_text() == report.relation_table(records, "paper") + "\n"
    assert written["intervals"]["splits"] == {split: {metric: list(bounds) for metric, bounds in metrics.items()}
                                              for split, metrics in report.intervals(records).items()}
    assert {key: written["intervals"][key] for key in ("confidence", "resamples", "seed")} == {
        "confidence": 0.95, "resamples": 1000, "seed": 0}


def test_merge_two_methods_one_model(tmp_path: Path) -> None:
    first = write_run(tmp_path / "a", REVERSE, method="ft")
    second = write_run(tmp_path / "b", [record("reverse-0000", method="rome", cs_exp=0, cs_imp=0, cm=0.0)],
                       method="rome")
    table1_md, table2_md = merge_runs([first, second])
    lines = table1_md.splitlines()
    model_line = lines.index(next(line for line in lines if line.startswith(f"| *{MODEL}*")))
    assert [line.split("|")[1].strip() for line in lines[model_line + 1:model_line + 3]] == ["ft", "rome"]
    assert table1_md.count(f"*{MODEL}*") == 2  # once in the table, once in its interval table
    assert cells(table1_md, "rome")[4:7] == ["0.00", "0.00", "0.00"]
    assert f"{MODEL} / ft: coverage –, reverse 3 (1 error), composite –; {MODEL} / rome: coverage –, reverse 1, " \
           "composite –\n" in table1_md
    assert cells(section(table1_md, "95% confidence intervals of Table 1"), "rome")[4] == "[0.0, 0.0]"
    assert "rome" in table2_md and "Note:" not in table1_md


def test_merge_same_model_and_method_later_wins_split_by_split(tmp_path: Path) -> None:
    old = write_run(tmp_path / "old", REVERSE + EASY)
    new = write_run(tmp_path / "new", [record("reverse-0000", cs_exp=0, cs_imp=0, cm=0.0)])
    table1_md, table2_md = merge_runs([old, new])
    assert cells(table1_md, "ft")[4:7] == ["0.00", "0.00", "0.00"]  # reverse: the later run's one case
    assert table1_md.count("| ft |") == 2
    _, easy_only = merge_runs([old])
    assert cells(table2_md, "ft")[:4] == cells(easy_only, "ft")[:4]  # easy: only the earlier run had it
    note = f"is in several runs ({old}, {new}); each split comes from the last of them that ran it."
    assert note in table1_md and note in table2_md


def test_merge_flags_mixed_distortion_scaling(tmp_path: Path) -> None:
    paper = write_run(tmp_path / "p", EASY, method="ft", scaling="paper")
    upstream = write_run(tmp_path / "u", [dict(r, method="rome") for r in EASY], method="rome", scaling="upstream")
    coverage_only = write_run(tmp_path / "c", [record("coverage-0000", single_succ=1, cs=1, cm=0.1)],
                              method="mend", scaling="upstream")
    _, table2_md = merge_runs([paper, upstream, coverage_only])
    assert cells(table2_md, "ft (D: paper)")[2] == "3.00"
    assert cells(table2_md, "rome (D: upstream)")[2] == "3.00"
    assert cells(table2_md, "mend")[1] == "–"  # ran no RoundEdit split: its scaling does not matter
    assert "D scaling: MIXED" in table2_md and "not comparable" in table2_md
    _, same = merge_runs([paper, coverage_only])
    assert "MIXED" not in same and "\nD scaling: paper JS" in same


@pytest.mark.parametrize("problem, message", [
    ("missing summary", "summary.json: missing"),
    ("bad scaling", "summary.json: field 'distortion_scaling' must be 'paper' or 'upstream'"),
    ("bad split", "cases.jsonl, line 2: field 'split' must be one of"),
    ("bad metric", "cases.jsonl, line 1: field 'metrics.cm' must be a number or null"),
])
def test_load_run_names_file_and_line(tmp_path: Path, problem: str, message: str) -> None:
    run = write_run(tmp_path / "run", REVERSE[:2])
    if problem == "missing summary":
        (run / "summary.json").unlink()
    elif problem == "bad scaling":
        (run / "summary.json").write_text(json.dumps(summary(scaling="log2")))
    elif problem == "bad split":
        (run / "cases.jsonl").write_text(json.dumps(REVERSE[0]) + "\n" + json.dumps(dict(REVERSE[1], split="x")) + "\n")
    else:
        (run / "cases.jsonl").write_text(json.dumps(record("reverse-0000", cm="high")) + "\n")  # type: ignore[arg-type]
    with pytest.raises(report.ReportError) as info:
        report.load_run(run)
    assert isinstance(info.value, KeditError)
    assert str(info.value).startswith(f"{run}/{message}")


def test_kedit_report_prints_both_tables_and_writes_out(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    first = write_run(tmp_path / "a", REVERSE + EASY)
    second = write_run(tmp_path / "b", REVERSE, method="rome")
    assert main(["report", str(first), str(second), "--out", str(tmp_path / "merged")]) == 0
    out = capsys.readouterr().out
    table1_md, table2_md = merge_runs([first, second])
    assert out == f"{table1_md}\n\n{table2_md}\n"
    assert cells(out, "Method")[1] == "Single Succ" and cells(out.split("Table 2")[1], "Method")[1] == "EASY Succ"
    assert "95% confidence intervals of Table 1" in out and "95% confidence intervals of Table 2" in out
    assert (tmp_path / "merged" / "table1.md").read_text() == table1_md + "\n"
    assert (tmp_path / "merged" / "table2.md").read_text() == table2_md + "\n"
    assert not (tmp_path / "merged" / "relations.md").exists()


def test_kedit_report_by_relation_prints_each_run_breakdown(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    first = write_run(tmp_path / "a", REVERSE + EASY)
    second = write_run(tmp_path / "b", [dict(r, relation="P2") for r in REVERSE], method="rome")
    assert main(["report", str(first), str(second), "--by-relation", "--out", str(tmp_path / "merged")]) == 0
    out = capsys.readouterr().out
    runs = report.load_runs([first, second])
    relations = report.merge_relations(runs)
    assert out.endswith(f"\n\n{relations}\n")
    assert relations.startswith(f"## {MODEL} / ft\n\n{report.relation_table(REVERSE + EASY, 'paper')}")
    assert f"## {MODEL} / rome" in relations and cells(section(relations, f"## {MODEL} / rome"), "P2")[1] == "2"
    assert (tmp_path / "merged" / "relations.md").read_text() == relations + "\n"


def test_a_record_that_could_not_be_parsed_loads_back(tmp_path: Path) -> None:
    unparsed = dict(record("reverse-0007", "error"), relation=None, arity=None)
    run = write_run(tmp_path / "run", [*REVERSE, unparsed])
    assert report.load_run(run)[1][-1] == unparsed
    assert cells(merge_runs([run])[0], "ft")[4] == "100.00"


def test_kedit_report_missing_dir_is_one_line_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["report", str(tmp_path / "nope")]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == f"kedit: error: {tmp_path / 'nope'}: no such report directory\n"


def test_kedit_report_corrupt_cases_names_file_and_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = write_run(tmp_path / "run", REVERSE)
    lines = (run / "cases.jsonl").read_text().splitlines()
    (run / "cases.jsonl").write_text("\n".join([lines[0], lines[1][:25]]) + "\n")  # an interrupted write
    assert main(["report", str(run)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"kedit: error: {run / 'cases.jsonl'}, line 2: not valid JSON")
    assert err.count("\n") == 1 and "Traceback" not in err


def test_kedit_usage_errors_exit_2_in_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    assert main(["report"]) == 2
    err = capsys.readouterr().err
    assert err.splitlines() == [line for line in err.splitlines() if line.startswith("kedit: error: ")]
    assert len(err.splitlines()) == 2


def test_table2_rejects_unknown_scaling() -> None:
    with pytest.raises(ValueError, match="unknown D scaling 'log2'"):
        report.table2([(MODEL, "ft", {})], "log2")
