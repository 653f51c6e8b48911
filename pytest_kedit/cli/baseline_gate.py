"""``kedit baseline`` and ``kedit gate``: a baseline made from report folders, and report folders
gated against a baseline, as the plugin does at the end of a session.

Both take the report folders of one model × method (``--kedit-report``), combined as ``kedit
report`` combines them (:func:`~pytest_kedit.results.run_files.load_runs`: shards merged into their run),
so that a CI matrix of shards can be gated, and its baseline made, on the whole run. A case's
verdict does not depend on the other cases, and a gate is a statistic of the split, so gating the
merged run gives what gating the unsharded run would. Their options are the plugin's without
``kedit-``: ``--baseline``, ``--baseline-tolerance``, ``--baseline-ignore``, ``--gate``,
``--gate-mode``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from pytest_kedit.ci.baseline import (
    RECREATE_HINT,
    baseline_difference,
    default_path,
    mismatch_message,
    parse_ignore,
    read_baseline,
    update_baseline,
    version_note,
)
from pytest_kedit.ci.gates import GATE_MODES, parse_gates
from pytest_kedit.ci.gating import gate_markdown, gate_run, one_run
from pytest_kedit.ci.regression import DEFAULT_TOLERANCE, parse_tolerance
from pytest_kedit.ci.step_summary import append_step_summary
from pytest_kedit.errors import KeditError
from pytest_kedit.results.run_files import load_runs, partial_note


def add_baseline(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "baseline",
        help="make or update a baseline file from report folders (e.g. the merged shards of a CI matrix)",
        description="Write the cases of the run in the report folders (one model × method; shards are merged "
                    "as kedit report merges them) as a baseline, with the update policy of "
                    "--kedit-baseline-update: a baseline made the same way is updated (this run's cases replace "
                    "theirs, the others are kept), one made otherwise is replaced. See kedit docs ci, Baselines. "
                    "Exit status: 0 written, 1 not written (a partial run and a baseline made otherwise), "
                    "2 usage error.",
    )
    parser.add_argument("dirs", nargs="+", type=Path, metavar="RUN_DIR", help="a report directory of the run")
    parser.add_argument("--baseline", "--out", dest="baseline", type=Path, metavar="PATH",
                        help="the baseline file, as --kedit-baseline (default: .kedit/baselines/<model>/<method>.json "
                             "under the current directory)")
    parser.add_argument("--partial", action="store_true",
                        help="also from a partial run (a shard missing, an interrupted run): it lacks cases")
    parser.set_defaults(handler=_baseline)


def _baseline(args: argparse.Namespace) -> int:
    run = one_run(load_runs(args.dirs))
    summary, where = run.summary, ", ".join(run.folders)
    if not summary.complete and not args.partial:
        raise KeditError(f"{where}: {partial_note(summary)}; a baseline of it would lack the cases that did not "
                         "run (and replace a baseline made otherwise without them): give --partial to write it anyway")
    if not run.records or summary.model_fingerprint is None:
        raise KeditError(f"{where}: no case reached the model (summary.json has no model_fingerprint); "
                         "there is nothing to make a baseline of")
    path = args.baseline if args.baseline is not None else default_path(Path.cwd(), summary.model, summary.method)
    written, line = update_baseline(path, run.provenance, run.records, summary.complete, summary.cases_done,
                                    max(summary.cases_expected, summary.cases_done))
    print(line)
    return 0 if written else 1


def add_gate(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "gate",
        help="gate report folders (e.g. the merged shards of a CI matrix) against a baseline: regressions and gates",
        description="Judge every case of the run in the report folders (one model × method; shards are merged as "
                    "kedit report merges them) against the baseline, as --kedit-baseline does, and check the "
                    "gates, as --kedit-gate does; print the verdicts, the regressed cases and the gates as "
                    "Markdown, also appended to GITHUB_STEP_SUMMARY when it is set. See kedit docs ci, Gating "
                    "report folders. Exit status: 0, 1 when a case regressed or is an error or a gate failed, "
                    "2 usage error.",
    )
    parser.add_argument("dirs", nargs="+", type=Path, metavar="RUN_DIR", help="a report directory of the run")
    parser.add_argument("--baseline", type=Path, metavar="PATH",
                        help="the baseline file, as --kedit-baseline (default: .kedit/baselines/<model>/<method>.json "
                             "under the current directory, the run's model and method)")
    parser.add_argument("--gate", action="append", default=[], metavar="SPEC",
                        help="an aggregate gate, as --kedit-gate: SPLIT.METRIC>=V, SPLIT.METRIC<=V, "
                             "SPLIT.METRIC<=baseline+V, SPLIT.METRIC>=baseline-V; repeatable")
    parser.add_argument("--gate-mode", choices=GATE_MODES, default="significant", metavar="MODE",
                        help="how a relative gate fails, as --kedit-gate-mode: significant or point (default: significant)")
    parser.add_argument("--baseline-tolerance", "--tolerance", dest="tolerance", default=None, metavar="T",
                        help=f"as --kedit-baseline-tolerance: how much worse a metric may get, per-case scale "
                             f"(default: {DEFAULT_TOLERANCE:g})")
    parser.add_argument("--baseline-ignore", "--ignore", dest="ignore", default=None, metavar="FIELD,...",
                        help="as --kedit-baseline-ignore: provenance fields that may differ from the baseline's")
    parser.set_defaults(handler=_gate)


def _gate(args: argparse.Namespace) -> int:
    tolerance = parse_tolerance(args.tolerance, "--baseline-tolerance")
    ignore = parse_ignore(args.ignore, "--baseline-ignore")
    gates = parse_gates(args.gate, args.gate_mode, has_baseline=True, option="--gate")
    run = one_run(load_runs(args.dirs))
    path = args.baseline if args.baseline is not None else default_path(Path(), run.summary.model, run.summary.method)
    baseline = read_baseline(path)
    difference = baseline_difference(baseline, run.provenance, ignore)
    if difference is not None:
        raise KeditError(mismatch_message(baseline, difference, "--baseline-ignore", f"{RECREATE_HINT} or kedit baseline"))
    summary = run.summary
    result = gate_run(run.records, baseline, summary.thresholds, tolerance, gates, args.gate_mode)
    notes = [*([] if summary.complete else [f"{partial_note(summary)}."]), *filter(None, [version_note(baseline, run.provenance)])]
    note = "\n\n".join(f"**Note:** {text}" for text in notes)
    markdown = gate_markdown(f"kedit gate: {summary.model} × {summary.method}", baseline, result,
                             args.gate_mode, note)
    print(markdown)
    try:
        append_step_summary(markdown)
    except KeditError as exc:  # the verdict is printed; a job summary that cannot be written must not hide it
        print(f"kedit: {exc}", file=sys.stderr)
    return 1 if result.failed else 0
