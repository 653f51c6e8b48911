"""Aggregation, tables, report folders, merging runs and the ``kedit report`` command."""

from __future__ import annotations

import dataclasses
import json
import random
import re
from pathlib import Path
from typing import Any

import pytest
from run_summaries import run_summary

from pytest_kedit.benchmark import registry
from pytest_kedit.benchmark.registry import CONFLICT_EDIT, METRICS, ROUND_EDIT, SPLITS, splits_of, table_columns
from pytest_kedit.benchmark.thresholds import parse_thresholds
from pytest_kedit.cli.main import main
from pytest_kedit.errors import KeditError
from pytest_kedit.results.aggregation import COUNT_KEYS, aggregate, intervals, run_counts, sorted_records
from pytest_kedit.results.record import CaseRecord
from pytest_kedit.results.run_files import (
    CaseLog,
    load_run,
    load_runs,
    merge_relations,
    merge_table3,
    merge_tables,
    run_report,
    write_report,
)
from pytest_kedit.results.summary import RunSummary
from pytest_kedit.results.tables import (
    INTERVAL_METHOD,
    TableRow,
    paper_tables,
    relation_table,
    table1,
    table2,
    threshold_summary,
    timing_summary,
)

MODEL = "smollm2-135m"
RUN_THRESHOLDS = parse_thresholds(["cs_exp>=1", "cs_imp>=1", "fr<=0"], defaults=False)


def record(case_id: str, outcome: str = "passed", relation: str | None = "P1", failed: tuple[str, ...] = (),
           method: str = "ft", arity: str | None = None, **metrics: float) -> CaseRecord:
    """A case record; ``failed`` are the metrics whose thresholds the case missed."""
    return CaseRecord(
        case_id=case_id, split=case_id.split("-")[0], relation=relation, arity=arity, model=MODEL, method=method,
        outcome=outcome, metrics={metric: float(value) for metric, value in metrics.items()},
        failures=[f"{METRICS[metric].label} = {metrics[metric]:g}: evidence" for metric in failed],
        failed_metrics=list(failed), error="RuntimeError: boom" if outcome == "error" else None,
        timings={"edit": 0.1, "probe": 0.1, "restore": 0.0}, nodeid=f"suites/test_x.py::test_x[{case_id}]",
    )


def summary(method: str = "ft", scaling: str = "paper", model: str = MODEL) -> RunSummary:
    return run_summary(model=model, method=method, hparams={"lr": 0.1}, distortion_scaling=scaling,
                       thresholds=RUN_THRESHOLDS,
                       timings={"model_load": 2.0, "edit": 5.0, "probe": 2.0, "restore": 0.5, "total": 10.0})


REVERSE = [
    record("reverse-0000", cs_exp=1, cs_imp=1, cm=0.5),
    record("reverse-0001", "failed", failed=("cs_imp",), cs_exp=1, cs_imp=0, cm=0.25),
    record("reverse-0002", "error", cs_exp=0, cs_imp=0, cm=-1.0),  # metrics of an error case never count
]
EASY = [
    record("easy-0000", succ=1, d=0.02, ir=0.5, fr=0),
    record("easy-0001", "failed", failed=("fr",), succ=0.5, d=0.04, ir=1.0, fr=1),
]


def with_method(records: list[CaseRecord], method: str) -> list[CaseRecord]:
    return [dataclasses.replace(r, method=method) for r in records]


def row(records: list[CaseRecord], method: str = "ft") -> TableRow:
    return TableRow(MODEL, method, aggregate(records))


def cells(table: str, first: str) -> list[str]:
    """The cells of the Markdown row whose first cell is ``first``."""
    for line in table.splitlines():
        parts = [part.strip() for part in line.strip().strip("|").split("|")]
        if line.startswith("|") and parts[0] == first:
            return parts
    raise AssertionError(f"no row {first!r} in:\n{table}")


def by_column(table: str, first: str, headers: list[str]) -> list[str]:
    """The cells of row ``first`` under the given column headers of a Table 1/2 ("Method" row)."""
    header, row = cells(table, "Method"), cells(table, first)
    return [row[header.index(name)] for name in headers]


def first_cells(table: str) -> list[str]:
    """The first cell of every Markdown row but the alignment rows, in order."""
    return [line.strip("|").split("|")[0].strip() for line in table.splitlines()
            if line.startswith("|") and not line.startswith("|:")]


def write_run(directory: Path, records: list[CaseRecord], **kwargs: Any) -> Path:
    write_report(directory, summary(**kwargs), records)
    return directory


def merge_runs(directories: list[Path]) -> tuple[str, str]:
    return merge_tables(load_runs(directories))


def section(text: str, title: str) -> str:
    """The part of ``text`` from the line ``title`` on."""
    return text[text.index("\n" + title + "\n") + 1:]


def test_aggregate_means_times_100_and_counts() -> None:
    result = aggregate(REVERSE + EASY)
    assert list(result) == ["reverse", "easy"]
    assert result["reverse"]["cs_exp"] == pytest.approx(100.0)
    assert result["reverse"]["cs_imp"] == pytest.approx(50.0)
    assert result["reverse"]["cm"] == pytest.approx(37.5)
    assert result["easy"]["d"] == pytest.approx(3.0)
    assert result["easy"]["succ"] == pytest.approx(75.0)
    assert {k: result["reverse"][k] for k in COUNT_KEYS} == {"cases": 3, "passed": 1, "failed": 1, "error": 1, "xfailed": 0}


def test_error_cases_only_count_as_errors() -> None:
    result = aggregate([record("composite-0000", "error"), record("composite-0001", "error", cm=-1.0)])
    assert result == {"composite": {"cases": 2, "passed": 0, "failed": 0, "error": 2, "xfailed": 0}}
    assert cells(table1([TableRow(MODEL, "ft", result)]), "ft")[-4:] == ["–"] * 4


def test_table3_shows_shares_times_100_and_ratios_norms_and_collapse_points_as_they_are() -> None:
    records = [record("sequential-0000", es=0.5, gs=0.25, loc=1.0, ppl=1.2, norm=0.01, collapse_at=100.0),
               record("sequential-0001", es=1.0, gs=0.75, loc=0.5, ppl=1.4, norm=0.03, collapse_at=50.0),
               record("reverse-0000", cs_exp=1.0, cs_imp=0.0, cm=0.5)]
    text = run_report(summary(), records).table3
    assert text.startswith("Table 3: Sequential editing (mean over streams of the last checkpoint; protocol: paper)")
    assert by_column(text, "ft", ["Sequential ES (final)", "Sequential GS (final)", "Sequential Locality",
                                  "Sequential PPL ratio", "Sequential Update norm", "Sequential Collapse at",
                                  "Sequential Retention"]) == ["75.00", "50.00", "75.00", "1.30", "0.02", "75.00", "–"]
    assert "PPL ratio, Update norm, Collapse at as they are" in text and "sequential 2" in text


STREAMS = [record("sequential-0000", es=0.5, gs=0.25, loc=1.0, ppl=1.2, norm=0.01, collapse_at=100.0),
           record("sequential-0001", es=1.0, gs=0.75, loc=0.5, ppl=1.4, norm=0.03, collapse_at=50.0)]


def test_table3_md_is_written_with_streams_and_removed_without(tmp_path: Path) -> None:
    folder = tmp_path / "run"
    run = write_report(folder, summary(), REVERSE + STREAMS)
    assert (folder / "table3.md").read_text() == run.table3 + "\n"
    assert "Sequential PPL ratio" in run.table3
    write_report(folder, summary(), REVERSE)  # another run into the same folder, without streams
    assert not (folder / "table3.md").exists() and (folder / "table1.md").exists()
    errors_only = [record("sequential-0000", "error")]  # a stream that could not run is still Table 3's
    assert "sequential 1 (1 error)" in write_report(folder, summary(), errors_only).table3
    assert (folder / "table3.md").exists()
    with CaseLog(folder, resume=True) as log:  # a resumed run starts without the tables it will rewrite
        log.append(STREAMS[0])
        assert not (folder / "table3.md").exists()


def test_an_interrupted_run_marks_table3_md_partial(tmp_path: Path) -> None:
    stopped = dataclasses.replace(summary(), complete=False, cases_done=1, cases_expected=2)
    write_report(tmp_path / "run", stopped, STREAMS[:1])
    assert (tmp_path / "run" / "table3.md").read_text().endswith("\n\npartial: 1 of 2 cases (the run did not finish)\n")


def test_kedit_report_prints_table3_one_row_per_run_when_a_run_has_streams(tmp_path: Path,
                                                                           capsys: pytest.CaptureFixture[str]) -> None:
    streams = write_run(tmp_path / "a", REVERSE + STREAMS)
    other = write_run(tmp_path / "b", with_method(STREAMS[:1], "rome"), method="rome")
    paper = write_run(tmp_path / "c", with_method(REVERSE, "memit"), method="memit")
    assert main(["report", str(streams), str(other), str(paper), "--out", str(tmp_path / "merged")]) == 0
    out = capsys.readouterr().out
    table1_md, table2_md = merge_runs([streams, other, paper])
    table3_md = merge_table3(load_runs([streams, other, paper]))
    assert table3_md is not None and out == f"{table1_md}\n\n{table2_md}\n\n{table3_md}\n"
    assert by_column(table3_md, "ft", ["Sequential ES (final)", "Sequential PPL ratio"]) == ["75.00", "1.30"]
    assert by_column(table3_md, "rome", ["Sequential ES (final)", "Sequential PPL ratio"]) == ["50.00", "1.20"]
    assert set(cells(table3_md, "memit")[1:]) == {"–"}  # a row per run, as in Tables 1 and 2
    assert (tmp_path / "merged" / "table3.md").read_text() == table3_md + "\n"
    assert main(["report", str(paper), "--out", str(tmp_path / "merged")]) == 0
    assert "Table 3" not in capsys.readouterr().out and not (tmp_path / "merged" / "table3.md").exists()
    assert merge_table3(load_runs([paper])) is None


def test_tables_do_not_depend_on_record_order() -> None:
    rng = random.Random(7)
    records = [record(f"{split}-{i:04d}", rng.choice(["passed", "failed", "error"]), relation=f"P{i % 3}",
                      **{metric: rng.random() * 3 - 1 for metric in SPLITS[split].metrics})
               for split in SPLITS for i in range(12)]

    def everything() -> tuple[Any, ...]:
        run = run_report(summary(), records)
        return (aggregate(records), run.summary, run.table1, run.table2, run.table3, run.relations,
                threshold_summary(records, RUN_THRESHOLDS))

    expected = everything()
    for _ in range(3):
        rng.shuffle(records)
        assert everything() == expected


def test_table1_layout_grouped_by_model_with_dash_for_missing_splits() -> None:
    table = table1([row(REVERSE)])
    header = cells(table, "Method")
    columns = [label for _, _, label in table_columns(CONFLICT_EDIT)]
    assert header == ["Method", *columns]
    assert re.fullmatch(rf"\|:-+\|(-+:\|){{{len(columns)}}}", table.splitlines()[3])  # first column left, numbers right
    assert cells(table, f"*{MODEL}*")[1:] == [""] * len(columns)
    values = dict(zip(columns, cells(table, "ft")[1:]))
    assert [values.pop(name) for name in ["Reverse CS_exp", "Reverse CS_imp", "Reverse CM"]] == ["100.00", "50.00", "37.50"]
    assert set(values.values()) == {"–"}  # coverage and composite were not run
    assert table.splitlines()[-1] == ("n cases per split (errors excluded from the means): "
                                      "coverage –, reverse 3 (1 error), composite –")


def test_table2_layout_and_scaling_line() -> None:
    table = table2([row(EASY)], "upstream")
    assert cells(table, "Method")[1:] == ["EASY Succ", "EASY D", "EASY IR", "EASY FR",
                                          "HARD Succ", "HARD D", "HARD IR", "HARD FR"]
    assert cells(table, "ft")[1:] == ["75.00", "3.00", "75.00", "50.00", "–", "–", "–", "–"]
    assert "easy 2, hard –" in table
    assert table.splitlines()[-1].startswith("D scaling: upstream JS/|Obj|")


@pytest.mark.parametrize("benchmark", [CONFLICT_EDIT, ROUND_EDIT], ids=lambda b: b.name)
def test_every_registry_metric_of_a_split_is_a_column(benchmark: registry.Benchmark) -> None:
    everything = [record(f"{split}-0000", **dict.fromkeys(SPLITS[split].metrics, 1.0)) for split in splits_of(benchmark)]
    table = paper_tables([row(everything)], ["paper"], [intervals(everything)])[benchmark.table - 1]
    expected = [SPLITS[split].column(metric) for split in splits_of(benchmark) for metric in SPLITS[split].metrics]
    assert sorted(cells(table, "Method")[1:]) == sorted(expected)
    assert "–" not in cells(table, "ft")[1:]
    relations = relation_table(everything)
    for split in splits_of(benchmark):
        header = cells(section(relations, f"{split} by relation"), "Relation")
        assert header == ["Relation", "n", *(METRICS[metric].label for metric in SPLITS[split].metrics)]


def test_a_metric_added_to_a_split_in_the_registry_gets_its_column(monkeypatch: pytest.MonkeyPatch) -> None:
    reverse = SPLITS["reverse"]
    monkeypatch.setitem(registry.SPLITS, "reverse", dataclasses.replace(reverse, metrics=(*reverse.metrics, "tfd")))
    records = [dataclasses.replace(r, metrics={**r.metrics, "tfd": 0.5}) for r in REVERSE]
    table = table1([row(records)])
    header = cells(table, "Method")
    reverse_columns = [label for label in header if label.startswith("Reverse ")]
    assert reverse_columns[-1] == "Reverse TFD"  # after the split's other metrics
    assert cells(table, "ft")[header.index("Reverse TFD")] == "50.00"
    assert cells(section(relation_table(records), "reverse by relation"), "Relation")[-1] == "TFD"
    tfd_checked = parse_thresholds(["tfd<=0.3"], defaults=False)
    assert cells(threshold_summary(records, tfd_checked), "reverse")[-1] == "TFD 2/2"  # no failed_metrics name TFD
    bounds = run_report(summary(), records).summary.intervals
    assert bounds is not None and "tfd" in bounds["splits"]["reverse"]


def test_threshold_counts_come_from_failed_metrics_per_split() -> None:
    text = threshold_summary(REVERSE + EASY, RUN_THRESHOLDS)
    assert cells(text, "reverse")[1:] == ["3", "1", "1", "1", "CS_exp 2/2, CS_imp 1/2"]
    assert cells(text, "easy")[1:] == ["2", "1", "1", "0", "FR 1/2"]
    assert cells(text, "all")[1:5] == ["5", "2", "2", "1"]
    per_split = parse_thresholds(["cs_imp>=1", "cm>=0.3", "reverse.cs_imp=off"], defaults=False)
    assert cells(threshold_summary(REVERSE + EASY, per_split), "reverse")[-1] == "CM 2/2"  # failed_metrics name no CM
    assert cells(threshold_summary(REVERSE + EASY, per_split), "easy")[-1] == "–"
    reworded = [dataclasses.replace(r, failures=["something else entirely"]) for r in REVERSE]
    assert run_counts(reworded, RUN_THRESHOLDS)["splits"]["reverse"]["thresholds"]["cs_imp"] == {"checked": 2, "passed": 1}


def test_timing_summary_shares_and_per_case() -> None:
    text = timing_summary(dataclasses.replace(summary(), counts={"cases": 4}))
    assert cells(text, "edits")[1:] == ["5.00", "50.0%", "1.25"]
    assert cells(text, "other")[1:] == ["0.50", "5.0%", "0.12"]
    assert cells(text, "total")[1:] == ["10.00", "100.0%", "2.50"]
    parallel = timing_summary(run_summary(timings={"edit": 8.0, "probe": 4.0, "total": 6.0}))
    assert cells(parallel, "edits")[1:] == ["8.00", "66.7%", "–"]
    assert "parallel workers" in parallel


def test_table1_has_an_interval_table_with_the_same_columns_and_the_method() -> None:
    records = REVERSE + [record(f"reverse-{i:04d}", cs_exp=i % 2, cs_imp=1, cm=i / 10) for i in range(3, 12)]
    table = run_report(summary(), records).table1
    point, interval_table = table.split("95% confidence intervals of Table 1")
    assert point == table1([row(records)], protocols=["paper"]) + "\n\n"  # the paper's layout
    assert cells(interval_table, "Method") == cells(point, "Method")
    bounds = intervals(records)["reverse"]
    assert by_column(interval_table, "ft", ["Reverse CS_exp", "Reverse CS_imp", "Reverse CM"]) == [
        f"[{bounds[m][0]:.1f}, {bounds[m][1]:.1f}]" for m in ("cs_exp", "cs_imp", "cm")]
    others = [label for split, _, label in table_columns(CONFLICT_EDIT) if split != "reverse"]
    assert set(by_column(interval_table, "ft", others)) == {"–"}
    low, high = bounds["cs_exp"]
    assert low < aggregate(records)["reverse"]["cs_exp"] < high
    assert table.splitlines()[-1] == INTERVAL_METHOD
    assert "percentile bootstrap" in INTERVAL_METHOD and "1000 resamples" in INTERVAL_METHOD
    assert "seed 0" in INTERVAL_METHOD and "95%" in INTERVAL_METHOD


def test_table2_interval_table_keeps_the_scaling_marks(tmp_path: Path) -> None:
    paper = write_run(tmp_path / "p", EASY, method="ft", scaling="paper")
    upstream = write_run(tmp_path / "u", with_method(EASY, "rome"), method="rome", scaling="upstream")
    interval_table = section(merge_runs([paper, upstream])[1], "95% confidence intervals of Table 2")
    assert cells(interval_table, "ft (D: paper)")[2] == "[2.0, 4.0]"
    assert cells(interval_table, "rome (D: upstream)")[5:] == ["–"] * 4


def test_relation_table_has_mean_and_interval_per_relation_and_arity() -> None:
    records = [record("reverse-0000", relation="P17", cs_exp=1, cs_imp=1, cm=0.5),
               record("reverse-0001", relation="P17", cs_exp=0, cs_imp=1, cm=0.5),
               record("reverse-0002", relation="P131", cs_exp=1, cs_imp=0, cm=0.1),
               record("reverse-0003", "error", relation="P9")]
    text = relation_table(records)
    p17 = cells(text, "P17")
    assert p17[1] == "2"
    assert p17[2].startswith("50.00 [") and p17[3] == "100.00 [100.0, 100.0]"
    assert cells(text, "P131")[1:3] == ["1", "100.00 [100.0, 100.0]"]
    assert first_cells(text) == ["Relation", "P17", "P131"]  # natural order; errors (P9) left out
    assert "by arity" not in text  # arity is for RoundEdit
    assert text.splitlines()[-1] == INTERVAL_METHOD
    easy = [record(f"easy-{i:04d}", relation="P1", arity=arity, succ=1, d=0.01 * i, ir=0, fr=0)
            for i, arity in enumerate(["1-2@P1", "1-10@P1", "1-2@P1"])]
    text = relation_table(easy, scaling="upstream")
    arity = section(text, "easy by arity (1-N: N true objects)")
    assert cells(arity, "1-2")[1:3] == ["2", "100.00 [100.0, 100.0]"] and cells(arity, "1-10")[1] == "1"
    assert first_cells(arity) == ["Arity", "1-2", "1-10"]
    assert text.splitlines()[-1].startswith("D scaling: upstream")
    assert relation_table([record("coverage-0000", "error")]) == "no cases"


def test_case_log_writes_flushed_lines_and_replaces_a_previous_run_only_at_its_first_case(tmp_path: Path) -> None:
    (tmp_path / "run").mkdir()
    with CaseLog(tmp_path / "run") as log:
        log.append(REVERSE[1])
        log.append(REVERSE[0])
        lines = (tmp_path / "run" / "cases.jsonl").read_text().splitlines()  # readable before close
        assert [CaseRecord.from_json(line) for line in lines] == [REVERSE[1], REVERSE[0]]
    (tmp_path / "run" / "summary.json").write_text(summary().to_json())
    (tmp_path / "run" / "table1.md").write_text("old table")
    with CaseLog(tmp_path / "run"):
        pass  # a run that finished no case: the previous report stays whole
    assert load_run(tmp_path / "run")[1] == [REVERSE[1], REVERSE[0]]
    assert (tmp_path / "run" / "table1.md").read_text() == "old table"
    with CaseLog(tmp_path / "run") as log:
        log.append(REVERSE[2])
        assert not (tmp_path / "run" / "summary.json").exists()  # the old run's files are gone
        assert not (tmp_path / "run" / "table1.md").exists()
    (tmp_path / "run" / "summary.json").write_text(summary().to_json())
    assert load_run(tmp_path / "run")[1] == [REVERSE[2]]


def test_write_report_load_run_round_trip(tmp_path: Path) -> None:
    records = list(reversed(REVERSE + EASY))
    run = write_report(tmp_path / "out", summary(), records)
    written = run.summary
    loaded_summary, loaded = load_run(tmp_path / "out")
    assert loaded_summary == written
    assert written.to_mapping()["thresholds"] == ["cs_exp>=1.0", "cs_imp>=1.0", "fr<=0.0"]
    assert written.counts is not None and written.intervals is not None
    assert written.counts["splits"]["reverse"]["thresholds"] == {"cs_exp": {"checked": 2, "passed": 2},
                                                                "cs_imp": {"checked": 2, "passed": 1}}
    assert written.counts["splits"]["easy"]["thresholds"] == {"fr": {"checked": 2, "passed": 1}}
    assert written.counts["cases"] == 5
    assert loaded == sorted_records(records) == run.records
    text = (tmp_path / "out" / "summary.json").read_text()
    assert text == json.dumps(written.to_mapping(), sort_keys=True, indent=2) + "\n"
    assert run == run_report(summary(), records)
    assert (tmp_path / "out" / "table1.md").read_text() == run.table1 + "\n"
    assert (tmp_path / "out" / "table2.md").read_text() == run.table2 + "\n"
    assert (tmp_path / "out" / "relations.md").read_text() == relation_table(records, "paper") + "\n"
    assert written.intervals["splits"] == {split: {metric: list(bounds) for metric, bounds in metrics.items()}
                                              for split, metrics in intervals(records).items()}
    assert {key: written.intervals[key] for key in ("confidence", "resamples", "seed")} == {
        "confidence": 0.95, "resamples": 1000, "seed": 0}
    assert not list((tmp_path / "out").glob(".*tmp*"))  # atomic writes leave no temporary files


def test_merge_two_methods_one_model(tmp_path: Path) -> None:
    first = write_run(tmp_path / "a", REVERSE, method="ft")
    second = write_run(tmp_path / "b", [record("reverse-0000", method="rome", cs_exp=0, cs_imp=0, cm=0.0)],
                       method="rome")
    table1_md, table2_md = merge_runs([first, second])
    names = first_cells(table1_md)
    assert names[names.index(f"*{MODEL}*") + 1:][:2] == ["ft", "rome"]
    assert names.count(f"*{MODEL}*") == 2  # once in the table, once in its interval table
    assert by_column(table1_md, "rome", ["Reverse CS_exp", "Reverse CS_imp", "Reverse CM"]) == ["0.00", "0.00", "0.00"]
    assert f"{MODEL} / ft: coverage –, reverse 3 (1 error), composite –; {MODEL} / rome: coverage –, reverse 1, " \
           "composite –\n" in table1_md
    assert by_column(section(table1_md, "95% confidence intervals of Table 1"), "rome", ["Reverse CS_exp"]) == ["[0.0, 0.0]"]
    assert "rome" in table2_md and "Note:" not in table1_md


def test_merge_same_model_and_method_later_wins_split_by_split(tmp_path: Path) -> None:
    old = write_run(tmp_path / "old", REVERSE + EASY)
    new = write_run(tmp_path / "new", [record("reverse-0000", cs_exp=0, cs_imp=0, cm=0.0)])
    table1_md, table2_md = merge_runs([old, new])
    assert by_column(table1_md, "ft", ["Reverse CS_exp", "Reverse CS_imp", "Reverse CM"]) == ["0.00", "0.00", "0.00"]  # reverse: the later run's one case
    assert first_cells(table1_md).count("ft") == 2  # one row, and its interval row
    _, easy_only = merge_runs([old])
    assert cells(table2_md, "ft")[:4] == cells(easy_only, "ft")[:4]  # easy: only the earlier run had it
    note = f"is in several runs ({old}, {new}); each split comes from the last of them that ran it."
    assert note in table1_md and note in table2_md


def test_runs_with_other_stream_options_or_carried_edits_are_rows_of_their_own(tmp_path: Path) -> None:
    plain = write_run(tmp_path / "plain", REVERSE)
    carried = tmp_path / "carried"
    write_report(carried, dataclasses.replace(summary(), sequential={"carry": 50}),
                 [record("reverse-0000", cs_exp=0, cs_imp=0, cm=0.0)])
    table1_md, _ = merge_runs([plain, carried])
    assert [cell for cell in first_cells(table1_md) if cell.startswith("ft")] == ["ft", "ft (carry 50)", "ft", "ft (carry 50)"]
    assert by_column(table1_md, "ft (carry 50)", ["Reverse CS_exp"]) == ["0.00"]
    assert by_column(table1_md, "ft", ["Reverse CS_exp"]) == ["100.00"]  # the plain run's, not replaced
    assert "several runs" not in table1_md


def test_merge_flags_mixed_distortion_scaling(tmp_path: Path) -> None:
    paper = write_run(tmp_path / "p", EASY, method="ft", scaling="paper")
    upstream = write_run(tmp_path / "u", with_method(EASY, "rome"), method="rome", scaling="upstream")
    coverage_only = write_run(tmp_path / "c", [record("coverage-0000", method="mend", single_succ=1, cs=1, cm=0.1)],
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
    ("bad scaling", "summary.json: field 'distortion_scaling' must be one of paper, upstream, got 'log2'"),
    ("bad split", "cases.jsonl, line 2: field 'split' must be one of"),
    ("bad metric", "cases.jsonl, line 1: field 'metrics.cm' must be a number"),
])
def test_load_run_names_file_and_line(tmp_path: Path, problem: str, message: str) -> None:
    run = write_run(tmp_path / "run", REVERSE[:2])
    lines = [json.loads(r.to_json()) for r in REVERSE[:2]]
    if problem == "missing summary":
        (run / "summary.json").unlink()
    elif problem == "bad scaling":
        (run / "summary.json").write_text(json.dumps({**summary().to_mapping(), "distortion_scaling": "log2"}))
    elif problem == "bad split":
        (run / "cases.jsonl").write_text(json.dumps(lines[0]) + "\n" + json.dumps({**lines[1], "split": "x"}) + "\n")
    else:
        (run / "cases.jsonl").write_text(json.dumps({**lines[0], "metrics": {"cm": "high"}}) + "\n")
    with pytest.raises(KeditError) as info:
        load_run(run)
    assert str(info.value).startswith(f"{run}/{message}")


def test_kedit_report_prints_both_tables_and_writes_out(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    first = write_run(tmp_path / "a", REVERSE + EASY)
    second = write_run(tmp_path / "b", with_method(REVERSE, "rome"), method="rome")
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
    second = write_run(tmp_path / "b", [dataclasses.replace(r, relation="P2", method="rome") for r in REVERSE],
                       method="rome")
    assert main(["report", str(first), str(second), "--by-relation", "--out", str(tmp_path / "merged")]) == 0
    out = capsys.readouterr().out
    relations = merge_relations(load_runs([first, second]))
    assert out.endswith(f"\n\n{relations}\n")
    assert relations.startswith(f"## {MODEL} / ft\n\n{relation_table(REVERSE + EASY, 'paper')}")
    assert f"## {MODEL} / rome" in relations and cells(section(relations, f"## {MODEL} / rome"), "P2")[1] == "2"
    assert (tmp_path / "merged" / "relations.md").read_text() == relations + "\n"


def test_a_record_that_could_not_be_parsed_loads_back(tmp_path: Path) -> None:
    unparsed = record("reverse-0007", "error", relation=None)
    run = write_run(tmp_path / "run", [*REVERSE, unparsed])
    assert load_run(run)[1][-1] == unparsed
    assert by_column(merge_runs([run])[0], "ft", ["Reverse CS_exp"]) == ["100.00"]


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
        table2([TableRow(MODEL, "ft", {})], "log2")
