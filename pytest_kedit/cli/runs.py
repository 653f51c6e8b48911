"""``kedit report``, ``kedit compare`` and ``kedit metrics``: the tables and the visual report of report
folders, the paired comparison of two runs, and the list of metrics."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from pytest_kedit.ci import comparison, comparison_report
from pytest_kedit.cli.arguments import int_at_least
from pytest_kedit.errors import KeditError
from pytest_kedit.report import html as html_report
from pytest_kedit.results import run_files, tables
from pytest_kedit.results.summary import RunSummary


def add_report(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "report",
        help="print Table 1 and Table 2 (and Table 3 for streams) merged from report directories",
        description="Print Table 1 and Table 2, each with its 95% bootstrap intervals, and Table 3 when a run "
                    "has streams (the sequential split), with one row per model × method found in the report "
                    "directories. The shards of a run (--kedit-shard) "
                    "are merged into that run; other runs of the same model × method are combined split by "
                    "split, a later directory winning for a split both ran.",
    )
    parser.add_argument("dirs", nargs="+", type=Path, metavar="DIR", help="a run's report directory")
    parser.add_argument("--by-relation", action="store_true",
                        help="also print every metric per relation (and per arity for RoundEdit), per model × method")
    parser.add_argument("--out", type=Path, metavar="DIR",
                        help="also write what is printed into DIR: table1.md, table2.md (table3.md, relations.md); for a "
                             "single model × method also cases.jsonl and summary.json, so DIR is a report folder")
    parser.add_argument("--html", type=Path, metavar="FILE",
                        help="also write the visual report to FILE: one self-contained HTML page with the tables, "
                             "charts, Figure 5 and the runs' provenance (needs pip install 'pytest-kedit[html]'; "
                             "see kedit docs report)")
    parser.add_argument("--case", action="append", default=[], metavar="ID",
                        help="with --html: also draw Figure 5 for this RoundEdit case (easy-0003); repeatable")
    parser.set_defaults(handler=_report)


def _report(args: argparse.Namespace) -> int:
    if args.case and args.html is None:
        raise KeditError("--case chooses a case for Figure 5 of the visual report: give --html FILE too")
    runs = run_files.load_runs(args.dirs)
    if args.html is not None:  # first, so that a bad --case stops the command before it prints anything
        size = html_report.write_html_report(args.html, runs.by_key, runs.sources, args.case)
        print(f"visual report written to {args.html} ({size / 1e6:.2f} MB)", file=sys.stderr)
    table1_md, table2_md = run_files.merge_tables(runs)
    table3_md = run_files.merge_table3(runs)
    relations_md = run_files.merge_relations(runs) if args.by_relation else None
    if args.out is not None:
        run_files.write_tables(args.out, table1_md, table2_md, relations_md, table3_md)
        if len(runs.by_key) == 1:  # one run (shards merged): a report folder kedit compare and report read
            run_files.write_run_data(args.out, run_files.run_report(*next(iter(runs.by_key.values()))))
    print("\n\n".join(text for text in (table1_md, table2_md, table3_md, relations_md) if text is not None))
    return 0


def add_metrics(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "metrics",
        help="list every metric: its direction, default threshold and splits",
        description="Print the registry of metrics as a Markdown table: key, name, which way is better, "
                    "whether it is a per-case 0/1, the default threshold, the splits that report it.",
    )
    parser.set_defaults(handler=_metrics)


def _metrics(args: argparse.Namespace) -> int:
    print(tables.metric_table())
    return 0


def add_compare(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "compare",
        help="compare runs case by case against a first run: differences, paired intervals, McNemar, regressions",
        description="Compare each RUN_B with RUN_A over the cases both ran (same split and case id, an error in "
                    "neither): per split and metric the means on the tables' scale (×100 for shares and rates), B − A with its 95% paired bootstrap interval, "
                    "McNemar's exact p and the flips for 0/1 metrics, whether the metric regressed (its interval "
                    "entirely on the worse side), and the cases that got worse most. See kedit docs ci. Exit status: "
                    "0, or 1 with --fail-on-regression when a metric regressed; 2 usage error.",
    )
    parser.add_argument("run_a", type=Path, metavar="RUN_A", help="the report directory of the reference run")
    parser.add_argument("runs_b", nargs="+", type=Path, metavar="RUN_B", help="a report directory compared with RUN_A")
    parser.add_argument("--json", action="store_true", help="print JSON instead of Markdown")
    parser.add_argument("--top", type=int_at_least(0), default=5, metavar="N",
                        help="list the N cases per split that got worse most (default: 5; 0: none)")
    parser.add_argument("--fail-on-regression", action="store_true",
                        help="exit with status 1 when any metric of any RUN_B regressed against RUN_A")
    parser.set_defaults(handler=_compare)


def _compare(args: argparse.Namespace) -> int:
    summary_a, records_a = run_files.load_run(args.run_a)
    compared = []
    for directory in args.runs_b:
        summary_b, records_b = run_files.load_run(directory)
        compared.append((directory, summary_b, comparison.comparability_warnings(summary_a, summary_b),
                         comparison.compare_runs(records_a, records_b, top=args.top)))
    regressed = any(result.regressions for *_, result in compared)
    if args.json:
        print(json.dumps({
            "a": _run_json(args.run_a, summary_a),
            "comparisons": [{"b": _run_json(directory, summary_b), "warnings": warnings,
                             **comparison_report.comparison_json(result)}
                            for directory, summary_b, warnings, result in compared],
            "regressed": regressed,
        }, indent=2, ensure_ascii=False))
    else:
        sections = [f"# kedit compare\n\nA: {_run_label(args.run_a, summary_a)}"]
        for directory, summary_b, warnings, result in compared:
            sections.append("\n\n".join([f"## B: {_run_label(directory, summary_b)}",
                                          *(f"**Warning:** {warning}." for warning in warnings),
                                          comparison_report.comparison_markdown(result)]))
        print("\n\n".join(sections))
    return 1 if args.fail_on_regression and regressed else 0


def _run_json(directory: Path, summary: RunSummary) -> dict[str, Any]:
    return {"dir": str(directory), "model": summary.model, "method": summary.method}


def _run_label(directory: Path, summary: RunSummary) -> str:
    return f"`{directory}` ({summary.model} / {summary.method})"
