"""``kedit baseline`` and ``kedit gate``: a baseline made from report folders, and report folders
gated against a baseline, as the plugin does at the end of a session.

Both take the report folders of one model × method (``--kedit-report``), combined as ``kedit
report`` combines them (:func:`~pytest_kedit.results.run_files.load_runs`: shards merged into their run),
so that a CI matrix of shards can be gated, and its baseline made, on the whole run. A case's
verdict does not depend on the other cases, and a gate is a statistic of the split, so gating the
merged run gives what gating the unsharded run would.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

from tabulate import tabulate

from pytest_kedit.benchmark.registry import METRICS, split_order
from pytest_kedit.benchmark.thresholds import parse_thresholds
from pytest_kedit.ci.baseline import (
    RECREATE_HINT,
    Baseline,
    baseline_difference,
    default_path,
    display_path,
    mismatch_message,
    parse_ignore,
    read_baseline,
    update_baseline,
)
from pytest_kedit.ci.gates import GATE_MODES, Gate, GateMode, GateResult, check_gates, gates_markdown, parse_gates
from pytest_kedit.ci.regression import DEFAULT_TOLERANCE, Judgement, gated_cases_fail, judge, parse_tolerance, verdict_line, worse_by
from pytest_kedit.ci.step_summary import append_step_summary
from pytest_kedit.errors import KeditError
from pytest_kedit.results.provenance import DATA_FILES, provenance, run_difference
from pytest_kedit.results.record import CaseRecord
from pytest_kedit.results.run_files import Runs, load_run, load_runs, partial_note


class OneRun(NamedTuple):
    """The run that report folders of one model × method hold together."""

    folders: list[str]
    #: the summary of the run (of the merged shards, or of the last folder)
    summary: dict[str, Any]
    records: list[CaseRecord]
    #: its provenance, with the data files every folder read
    provenance: dict[str, Any]


def one_run(runs: Runs) -> OneRun:
    """The single model × method of ``runs``. KeditError, in one line, when the folders hold
    several, or when folders that are not shards were made differently (the first provenance
    difference, the data compared over the files both read; shards are checked as they merge)."""
    if len(runs.by_key) != 1:
        found = ", ".join(f"{model} / {method} ({', '.join(runs.sources[(model, method)])})"
                          for model, method in runs.by_key)
        raise KeditError(f"the folders hold {len(runs.by_key)} runs, {found}: give the folders of one model × method")
    key, (summary, records) = next(iter(runs.by_key.items()))
    folders = runs.sources[key]
    current = provenance(summary)
    if "shards" not in summary:
        for folder in folders[:-1]:
            other = provenance(load_run(folder)[0])
            difference = run_difference(other, current)
            if difference is not None:
                raise KeditError(f"{folder} and {folders[-1]} are not parts of one run: {difference}")
            files = {**other.get(DATA_FILES, {}), **current.get(DATA_FILES, {})}
            if files:
                current[DATA_FILES] = files
    return OneRun(folders, summary, records, current)


def add_baseline(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "baseline",
        help="make or update a baseline file from report folders (e.g. the merged shards of a CI matrix)",
        description="Write the cases of the run in the report folders (one model × method; shards are merged "
                    "as kedit report merges them) as a baseline, with the update policy of "
                    "--kedit-update-baseline: a baseline made the same way is updated (this run's cases replace "
                    "theirs, the others are kept), one made otherwise is replaced. See docs/ci.md#baselines. "
                    "Exit status: 0 written, 1 not written (a partial run and a baseline made otherwise), "
                    "2 usage error.",
    )
    parser.add_argument("dirs", nargs="+", type=Path, metavar="RUN_DIR", help="a report directory of the run")
    parser.add_argument("--out", type=Path, metavar="FILE",
                        help="the baseline file (default: .kedit/baselines/<model>/<method>.json under the "
                             "current directory)")
    parser.add_argument("--partial", action="store_true",
                        help="also from a partial run (a shard missing, an interrupted run): it lacks cases")
    parser.set_defaults(handler=_baseline)


def _baseline(args: argparse.Namespace) -> int:
    run = one_run(load_runs(args.dirs))
    summary, where = run.summary, ", ".join(run.folders)
    complete = summary.get("complete") is not False
    if not complete and not args.partial:
        raise KeditError(f"{where}: {partial_note(summary)}; a baseline of it would lack the cases that did not "
                         "run (and replace a baseline made otherwise without them): give --partial to write it anyway")
    if not run.records or summary.get("model_fingerprint") is None:
        raise KeditError(f"{where}: no case reached the model (summary.json has no model_fingerprint); "
                         "there is nothing to make a baseline of")
    path = args.out if args.out is not None else default_path(Path.cwd(), summary["model"], summary["method"])
    done = int(summary.get("cases_done") or len(run.records))
    written, line = update_baseline(path, run.provenance, run.records, complete, done,
                                    max(int(summary.get("cases_expected") or 0), done))
    print(line)
    return 0 if written else 1


class RunGate(NamedTuple):
    """A run judged against its baseline, as the plugin judges a session."""

    #: each record that is not an error, with its judgement
    judged: list[tuple[CaseRecord, Judgement]]
    errors: int
    gates: list[GateResult]

    @property
    def failed(self) -> bool:
        """A case regressed, a case is an error, or a gate failed: the plugin's session would fail."""
        return gated_cases_fail((judgement.verdict for _, judgement in self.judged), self.errors) or any(
            result.failed for result in self.gates)


def gate_run(records: Sequence[CaseRecord], baseline: Baseline, thresholds_specs: Sequence[str], tolerance: float,
             gates: Sequence[Gate], mode: GateMode) -> RunGate:
    """Judge every record against ``baseline`` (:func:`~pytest_kedit.ci.regression.judge`, under the
    run's thresholds ``thresholds_specs`` and ``tolerance``) and check ``gates``
    (:func:`~pytest_kedit.ci.gates.check_gates`) over the run's records and the baseline's."""
    thresholds = parse_thresholds(thresholds_specs, defaults=False)
    judged = [(record, judge(record.split, record.metrics, baseline.metrics(record.split, record.case_id),
                             thresholds.for_split(record.split), tolerance))
              for record in records if record.outcome != "error"]
    errors = sum(record.outcome == "error" for record in records)
    return RunGate(judged, errors, check_gates(gates, records, baseline.cases, mode))


def gate_markdown(title: str, baseline: Baseline, result: RunGate, mode: GateMode, note: str = "") -> str:
    """The report of :func:`gate_run`: ``title`` as a heading, ``note`` (a partial run), the
    verdict line, the regressed cases (case, metric, baseline and run values, how much worse) and
    the gates' table."""
    line = verdict_line(display_path(baseline.path), (judgement.verdict for _, judgement in result.judged), result.errors)
    parts = [f"## {title}", *([note] if note else []), line]
    rows = []
    for record, judgement in sorted(result.judged, key=lambda item: (split_order(item[0].split), item[0].case_id)):
        before = baseline.metrics(record.split, record.case_id) or {}
        for metric in judgement.regressed:
            value = record.metrics[metric]
            was = before.get(metric)
            rows.append([record.case_id, METRICS[metric].label, "–" if was is None else f"{was:.4g}", f"{value:.4g}",
                         "–" if was is None else f"{worse_by(metric, was, value):.4g}"])
    if rows:
        parts.append("Regressed cases:\n\n" + tabulate(rows, headers=["case", "metric", "baseline", "run", "worse by"],
                                                       tablefmt="pipe", disable_numparse=True,
                                                       colalign=("left", "left", "right", "right", "right")))
    if result.gates:
        parts.append(gates_markdown(result.gates, mode))
    return "\n\n".join(parts)


def add_gate(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "gate",
        help="gate report folders (e.g. the merged shards of a CI matrix) against a baseline: regressions and gates",
        description="Judge every case of the run in the report folders (one model × method; shards are merged as "
                    "kedit report merges them) against the baseline, as --kedit-baseline does, and check the "
                    "gates, as --kedit-gate does; print the verdicts, the regressed cases and the gates as "
                    "Markdown, also appended to GITHUB_STEP_SUMMARY when it is set. See docs/ci.md#gating-report-"
                    "folders-kedit-gate. Exit status: 0, 1 when a case regressed or is an error or a gate failed, "
                    "2 usage error.",
    )
    parser.add_argument("dirs", nargs="+", type=Path, metavar="RUN_DIR", help="a report directory of the run")
    parser.add_argument("--baseline", type=Path, required=True, metavar="FILE", help="the baseline file")
    parser.add_argument("--gate", action="append", default=[], metavar="SPEC",
                        help="an aggregate gate, as --kedit-gate: SPLIT.METRIC>=V, SPLIT.METRIC<=V, "
                             "SPLIT.METRIC<=baseline+V, SPLIT.METRIC>=baseline-V; repeatable")
    parser.add_argument("--gate-mode", choices=GATE_MODES, default="significant",
                        help="how a relative gate fails, as --kedit-gate-mode (default: significant)")
    parser.add_argument("--tolerance", default=None, metavar="T",
                        help=f"as --kedit-tolerance: how much worse a metric may get, per-case scale "
                             f"(default: {DEFAULT_TOLERANCE:g})")
    parser.add_argument("--ignore", default=None, metavar="FIELD,...",
                        help="as --kedit-baseline-ignore: provenance fields that may differ from the baseline's")
    parser.set_defaults(handler=_gate)


def _gate(args: argparse.Namespace) -> int:
    tolerance = parse_tolerance(args.tolerance, "--tolerance")
    ignore = parse_ignore(args.ignore, "--ignore")
    gates = parse_gates(args.gate, args.gate_mode, has_baseline=True, option="--gate")
    run = one_run(load_runs(args.dirs))
    baseline = read_baseline(args.baseline)
    difference = baseline_difference(baseline, run.provenance, ignore)
    if difference is not None:
        raise KeditError(mismatch_message(baseline, difference, "--ignore", f"{RECREATE_HINT} or kedit baseline"))
    result = gate_run(run.records, baseline, run.summary.get("thresholds") or [], tolerance, gates, args.gate_mode)
    summary = run.summary
    note = f"**Note:** {partial_note(summary)}." if summary.get("complete") is False else ""
    markdown = gate_markdown(f"kedit gate: {summary['model']} × {summary['method']}", baseline, result,
                             args.gate_mode, note)
    print(markdown)
    try:
        append_step_summary(markdown)
    except KeditError as exc:  # the verdict is printed; a job summary that cannot be written must not hide it
        print(f"kedit: {exc}", file=sys.stderr)
    return 1 if result.failed else 0
