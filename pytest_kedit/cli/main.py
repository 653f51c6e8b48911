"""The ``kedit`` command.

Each subcommand is one ``_add_<name>`` function that adds its parser and sets ``handler`` (a
function of the parsed arguments returning the exit status); list it in ``SUBCOMMANDS``. A user
error (:class:`~pytest_kedit.errors.KeditError` or a bad command line) prints one line
``kedit: error: ...`` on stderr and exits with status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

from pytest_kedit.benchmark.registry import SPLITS
from pytest_kedit.ci import comparison, comparison_report
from pytest_kedit.cli.baseline_gate import add_baseline, add_gate
from pytest_kedit.cli.docs import add_docs
from pytest_kedit.cli.init_project import add_init
from pytest_kedit.dataset import check as data_check
from pytest_kedit.dataset import input_length
from pytest_kedit.dataset.sources import resolve_source
from pytest_kedit.errors import KeditError
from pytest_kedit.report import html as html_report
from pytest_kedit.results import run_files, tables
from pytest_kedit.results.summary import RunSummary

USAGE_ERROR = 2
#: The status of a command whose output pipe was closed: 128 + SIGPIPE, as a shell reports a process SIGPIPE ended.
BROKEN_PIPE = 141


class _Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line, ``kedit: error: ...``."""

    def error(self, message: str) -> NoReturn:
        self.exit(USAGE_ERROR, f"kedit: error: {message} (see 'kedit --help')\n")


def _add_report(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "report",
        help="print Table 1 and Table 2 merged from report directories",
        description="Print Table 1 and Table 2, each with its 95% bootstrap intervals, with one row per "
                    "model × method found in the report directories. The shards of a run (--kedit-shard) "
                    "are merged into that run; other runs of the same model × method are combined split by "
                    "split, a later directory winning for a split both ran.",
    )
    parser.add_argument("dirs", nargs="+", type=Path, metavar="DIR", help="a run's report directory")
    parser.add_argument("--by-relation", action="store_true",
                        help="also print every metric per relation (and per arity for RoundEdit), per model × method")
    parser.add_argument("--out", type=Path, metavar="DIR",
                        help="also write what is printed into DIR: table1.md, table2.md (and relations.md); for a "
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
    relations_md = run_files.merge_relations(runs) if args.by_relation else None
    if args.out is not None:
        run_files.write_tables(args.out, table1_md, table2_md, relations_md)
        if len(runs.by_key) == 1:  # one run (shards merged): a report folder kedit compare and report read
            run_files.write_run_data(args.out, run_files.run_report(*next(iter(runs.by_key.values()))))
    print("\n\n".join(text for text in (table1_md, table2_md, relations_md) if text is not None))
    return 0


def _add_metrics(subparsers: Any) -> None:
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


def _add_check_data(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "check-data",
        help="list every problem of a dataset (schema, prompts, labels, duplicates)",
        description="Check a dataset and print one line per finding, FILE:record N: field: message, then "
                    "a count per kind and file. Exit status: 0 no errors (warnings: a numeric-only label, a "
                    "duplicate case), 1 errors, 2 usage error.",
    )
    parser.add_argument("path", metavar="PATH",
                        help="a folder in the upstream layout, one of its files, or upstream:GPT2-XL / upstream:GPT-J")
    parser.add_argument("--strict", action="store_true",
                        help="also hold the data to the built-in suites' rules (the upstream keys in order, the "
                             "relations between triples and edits, 10 paraphrases per relation, every split with "
                             "at least 12 cases) and count warnings as errors")
    parser.add_argument("--model", default=None, metavar="M",
                        help="count the length of every model input (a prompt with its subject, then an object) with "
                             "M's tokenizer and report those longer than M's context (embedded alias, local "
                             "directory or Hugging Face id; reads the tokenizer, not the weights)")
    parser.add_argument("--max-tokens", type=_int_at_least(1), default=None, metavar="N",
                        help="report model inputs longer than N tokens (default with --model: its context); "
                             "without --model, N bounds the UTF-8 bytes of an input, which no byte-level "
                             "tokenizer's tokens exceed")
    parser.set_defaults(handler=_check_data)


def _check_data(args: argparse.Namespace) -> int:
    length = None
    if args.model is not None:
        length = input_length.model_limit(args.model, args.max_tokens)
    elif args.max_tokens is not None:
        length = input_length.byte_limit(args.max_tokens)
    findings = data_check.check_data(args.path, strict=args.strict, length=length)
    for finding in findings:
        print(finding)
    print(data_check.summarize(findings) or f"no findings in {args.path}")
    return 1 if data_check.failed(findings) else 0


def _int_at_least(minimum: int) -> Callable[[str], int]:
    """An argparse ``type`` reading a whole number of at least ``minimum``."""

    def read(text: str) -> int:
        value = int(text)
        if value < minimum:
            raise argparse.ArgumentTypeError(f"expected a whole number of at least {minimum}, got {text}")
        return value

    read.__name__ = f"integer >= {minimum}"  # argparse names the type in its "invalid ... value" message
    return read


def _positive_number(text: str) -> float:
    """An argparse ``type`` reading a finite number greater than 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"expected a finite number greater than 0, got {text}")
    return value


def _add_build_suite(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "build-suite",
        help="re-filter a dataset for one model, as the paper filtered its data per model",
        description="Keep the cases of SOURCE whose facts MODEL knows (composite: the tied fact; easy/hard: "
                    "the round-edited object, produced and preferred to the target), copy coverage and reverse, "
                    "split easy/hard again by how close the target is to the true objects on MODEL (unless "
                    "--keep-splits), and write the suite and manifest.json to OUT (see kedit docs data-build). "
                    "Resumable: run the same command again after an interruption.",
    )
    parser.add_argument("--model", required=True, help="embedded alias, local directory or Hugging Face id")
    parser.add_argument("--from", dest="source", required=True, metavar="SOURCE",
                        help="a folder in the upstream layout, upstream:GPT2-XL / upstream:GPT-J, or builtin")
    parser.add_argument("--out", required=True, type=Path, metavar="DIR", help="the folder to write the suite to")
    parser.add_argument("--splits", default=",".join(SPLITS), help="comma-separated splits (default: all five)")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default: auto)")
    parser.add_argument("--dtype", default="auto", help="auto (float32), float16 or bfloat16 (default: auto)")
    parser.add_argument("--batch-size", type=_int_at_least(1), default=argparse.SUPPRESS,
                        help="cases decided together, prompts generated together (default: 32)")
    parser.add_argument("--max-new-tokens", type=_int_at_least(1), default=argparse.SUPPRESS,
                        help="tokens of each greedy continuation (default: 12)")
    parser.add_argument("--top-k", type=_int_at_least(1), default=argparse.SUPPRESS,
                        help="a RoundEdit object is produced when its first token ranks among the top K next "
                             "tokens (default: 10)")
    parser.add_argument("--limit", type=_int_at_least(1), default=argparse.SUPPRESS,
                        help="only the first N records of each split (a trial run; resumable without it)")
    parser.add_argument("--keep-splits", action="store_true",
                        help="keep each kept easy/hard case in its source split instead of splitting them again "
                             "by closeness: for hand-chosen cases, such as the built-in suites'")
    parser.set_defaults(handler=_build_suite)


def _build_suite(args: argparse.Namespace) -> int:
    # Imported here: torch and transformers take seconds to import, which the other commands do not need.
    from pytest_kedit.model.loading import load_model
    from pytest_kedit.suite_build.builder import BuildSettings, build_suite, check_request
    from pytest_kedit.suite_build.manifest import MANIFEST

    splits = tuple(s.strip() for s in args.splits.split(",") if s.strip())
    check_request(args.source, args.out, splits, args.keep_splits)
    names = ("batch_size", "max_new_tokens", "top_k", "limit")
    options = {name: getattr(args, name) for name in names if hasattr(args, name)}
    settings = BuildSettings(**options, keep_splits=args.keep_splits)
    try:
        loaded = load_model(args.model, device=args.device, dtype=args.dtype)
        manifest = build_suite(loaded, args.source, args.out, splits, settings)
    except KeyboardInterrupt:
        print(f"kedit: interrupted; decisions so far are kept in {args.out}: run the same command to resume",
              file=sys.stderr)
        return 130
    for split, counts in manifest["splits"].items():
        print(f"{split:9s} kept {counts['kept']:5d}, dropped {counts['dropped']:5d} of {counts['source_records']:5d}")
    if "round_resplit" in manifest:
        resplit = manifest["round_resplit"]
        print(f"re-split at closeness {resplit['threshold']}: easy {resplit['easy']['cases']}, "
              f"hard {resplit['hard']['cases']}")
    print(f"wrote {args.out} (criteria and every dropped record: {args.out / MANIFEST})")
    return 0


def _add_compare(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "compare",
        help="compare runs case by case against a first run: differences, paired intervals, McNemar, regressions",
        description="Compare each RUN_B with RUN_A over the cases both ran (same split and case id, an error in "
                    "neither): per split and metric the means ×100, B − A with its 95% paired bootstrap interval, "
                    "McNemar's exact p and the flips for 0/1 metrics, whether the metric regressed (its interval "
                    "entirely on the worse side), and the cases that got worse most. See kedit docs ci. Exit status: "
                    "0, or 1 with --fail-on-regression when a metric regressed; 2 usage error.",
    )
    parser.add_argument("run_a", type=Path, metavar="RUN_A", help="the report directory of the reference run")
    parser.add_argument("runs_b", nargs="+", type=Path, metavar="RUN_B", help="a report directory compared with RUN_A")
    parser.add_argument("--json", action="store_true", help="print JSON instead of Markdown")
    parser.add_argument("--top", type=_int_at_least(0), default=5, metavar="N",
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


def _add_train_mend(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "train-mend",
        help="train MEND's hypernetwork for a model, on data disjoint from the evaluated suite",
        description="Train the MEND network of MODEL on edit requests made from the benchmark data at SOURCE, "
                    "leaving out every case and entity of the suite MEND will be evaluated on (see "
                    "kedit docs editors, MEND). The training state is checkpointed in OUT: run the same command "
                    "again to resume. The best network goes to the cache, where --kedit-method=mend finds it.",
    )
    parser.add_argument("--model", required=True, help="embedded alias, local directory or Hugging Face id")
    parser.add_argument("--from", dest="source", required=True, metavar="SOURCE",
                        help="benchmark data: a folder in the upstream layout, or upstream:GPT2-XL / upstream:GPT-J")
    parser.add_argument("--out", required=True, type=Path, metavar="DIR",
                        help="the folder of the training state and of the final checkpoint")
    parser.add_argument("--evaluated-data", default=None, metavar="DATA",
                        help="the suite MEND will be evaluated on, excluded from training (default: the built-in suites)")
    parser.add_argument("--hparams", default=None, metavar="FILE", help="MEND hyper-parameters (default: the packaged ones)")
    parser.add_argument("--max-steps", type=_int_at_least(1), default=None,
                        help="steps of this run at most (resume later with the same command)")
    parser.add_argument("--max-minutes", type=_positive_number, default=None,
                        help="wall-clock budget of this run (overrides max_minutes)")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default: auto)")
    parser.add_argument("--dtype", default="auto", help="auto (float32), float16 or bfloat16 (default: auto)")
    parser.set_defaults(handler=_train_mend)


def _train_mend(args: argparse.Namespace) -> int:
    # Imported here: torch and transformers take seconds to import, which the other commands do not need.
    import dataclasses

    from pytest_kedit.editors.hparams import load_hparams
    from pytest_kedit.editors.mend.editor import MENDEditor
    from pytest_kedit.editors.mend.training import MENDTrainer
    from pytest_kedit.editors.mend.training_data import training_data
    from pytest_kedit.model.loading import load_model

    for option, value in (("--from", args.source), ("--evaluated-data", args.evaluated_data)):
        if value is not None:
            resolve_source(value, option)
    data = training_data(args.source, args.evaluated_data)
    loaded = load_model(args.model, device=args.device, dtype=args.dtype)
    hparams = load_hparams("mend", MENDEditor.hparams_class, loaded.name, loaded.family, args.hparams)
    if args.max_minutes is not None:
        hparams = dataclasses.replace(hparams, max_minutes=args.max_minutes)
    split = data.split
    print(f"training data: {split['train_examples']} edits, {split['val_examples']} held out, {split['facts']} locality facts; "
          f"dropped {sum(split['dropped_cases'].values())} of {split['source_cases']} source cases ({split['dropped_cases']})")
    try:
        manifest = MENDTrainer(loaded, hparams, data, args.out).run(args.max_steps)
    except KeyboardInterrupt:
        print(f"kedit: interrupted; the last checkpoint in {args.out} is kept: run the same command to resume",
              file=sys.stderr)
        return 130
    last = manifest["validation"][-1] if manifest["validation"] else {}
    print(f"steps {manifest['steps']} ({manifest['stopped'] or 'resumable'}), best at step {manifest['best_step']}; "
          f"last validation: edit success {last.get('edit_success', float('nan')):.3f}, "
          f"drawdown {last.get('drawdown', float('nan')):.3f}")
    print(f"wrote {args.out} and {manifest['cache_entry']}")
    return 0


#: One entry per subcommand: adds its parser to the ``kedit`` subparsers.
SUBCOMMANDS: tuple[Callable[[Any], None], ...] = (_add_report, _add_metrics, _add_check_data, _add_build_suite,
                                                  _add_compare, add_baseline, add_gate, _add_train_mend, add_init,
                                                  add_docs)


def build_parser() -> argparse.ArgumentParser:
    """The ``kedit`` argument parser with every subcommand of :data:`SUBCOMMANDS`."""
    parser = _Parser(prog="kedit", description="Tools of pytest-kedit, the knowledge-editing pitfalls benchmark.")
    subparsers = parser.add_subparsers(title="commands", dest="command", required=True, metavar="COMMAND")
    for add in SUBCOMMANDS:
        add(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run ``kedit`` with ``argv`` (default: ``sys.argv[1:]``); return the exit status. When the
    reader of the output goes away (``kedit compare A B | head``), stop quietly with status
    :data:`BROKEN_PIPE`."""
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:  # --help, or a bad command line already reported in one line
        return exc.code if isinstance(exc.code, int) else 0
    try:
        status: int = args.handler(args)
        sys.stdout.flush()  # here, so that a closed pipe is caught below and not at interpreter exit
        return status
    except KeditError as exc:
        print(f"kedit: error: {' '.join(line.strip() for line in str(exc).splitlines())}", file=sys.stderr)
        return USAGE_ERROR
    except BrokenPipeError:
        # As the Python docs advise: stdout to devnull, so that the flush at exit does not fail again.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
        return BROKEN_PIPE
