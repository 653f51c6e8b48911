"""The ``kedit`` command.

Each subcommand is one ``_add_<name>`` function that adds its parser and sets ``handler`` (a
function of the parsed arguments returning the exit status); list it in ``SUBCOMMANDS``. A user
error (:class:`~pytest_kedit.errors.KeditError` or a bad command line) prints one line
``kedit: error: ...`` on stderr and exits with status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

from . import data_check, report
from .cases import SPLITS
from .errors import KeditError

USAGE_ERROR = 2


class _Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line, ``kedit: error: ...``."""

    def error(self, message: str) -> NoReturn:
        self.exit(USAGE_ERROR, f"kedit: error: {message} (see 'kedit --help')\n")


def _add_report(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "report",
        help="print Table 1 and Table 2 merged from report directories",
        description="Print Table 1 and Table 2, each with its 95% bootstrap intervals, with one row per "
                    "model × method found in the report directories (runs of the same model × method "
                    "are combined split by split, a later directory winning for a split both ran).",
    )
    parser.add_argument("dirs", nargs="+", type=Path, metavar="DIR", help="a run's report directory")
    parser.add_argument("--by-relation", action="store_true",
                        help="also print every metric per relation (and per arity for RoundEdit), per model × method")
    parser.add_argument("--out", type=Path, metavar="DIR",
                        help="also write what is printed into DIR: table1.md, table2.md (and relations.md)")
    parser.set_defaults(handler=_report)


def _report(args: argparse.Namespace) -> int:
    runs = report.load_runs(args.dirs)
    table1_md, table2_md = report.merge_tables(runs)
    relations_md = report.merge_relations(runs) if args.by_relation else None
    if args.out is not None:
        report.write_tables(args.out, table1_md, table2_md, relations_md)
    print("\n\n".join(text for text in (table1_md, table2_md, relations_md) if text is not None))
    return 0


def _add_check_data(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "check-data",
        help="list every problem of a dataset (schema, prompts, labels, duplicates)",
        description="Check a dataset and print one line per finding, FILE:record N: field: message, then "
                    "a count per kind and file. Exit status: 0 no findings, 1 findings, 2 usage error.",
    )
    parser.add_argument("path", metavar="PATH",
                        help="a folder in the upstream layout, one of its files, or upstream:GPT2-XL / upstream:GPT-J")
    parser.set_defaults(handler=_check_data)


def _check_data(args: argparse.Namespace) -> int:
    findings = data_check.check_data(args.path)
    for finding in findings:
        print(finding)
    print(data_check.summarize(findings) or f"no findings in {args.path}")
    return 1 if findings else 0


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text}")
    return value


def _add_build_suite(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "build-suite",
        help="re-filter a dataset for one model, as the paper filtered its data per model",
        description="Keep the cases of SOURCE whose facts MODEL knows (composite: the tied fact; easy/hard: "
                    "the round-edited object, produced and preferred to the target), copy coverage and reverse, "
                    "split easy/hard again by how close the target is to the true objects on MODEL, and write the "
                    "suite and manifest.json to OUT (see docs/data-build.md). Resumable: run the same command "
                    "again after an interruption.",
    )
    parser.add_argument("--model", required=True, help="embedded alias, local directory or Hugging Face id")
    parser.add_argument("--from", dest="source", required=True, metavar="SOURCE",
                        help="a folder in the upstream layout, upstream:GPT2-XL / upstream:GPT-J, or builtin")
    parser.add_argument("--out", required=True, type=Path, metavar="DIR", help="the folder to write the suite to")
    parser.add_argument("--splits", default=",".join(SPLITS), help="comma-separated splits (default: all five)")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default: auto)")
    parser.add_argument("--dtype", default="auto", help="auto (float32), float16 or bfloat16 (default: auto)")
    parser.add_argument("--batch-size", type=_positive_int, default=argparse.SUPPRESS,
                        help="cases decided together, prompts generated together (default: 32)")
    parser.add_argument("--max-new-tokens", type=_positive_int, default=argparse.SUPPRESS,
                        help="tokens of each greedy continuation (default: 12)")
    parser.add_argument("--top-k", type=_positive_int, default=argparse.SUPPRESS,
                        help="a RoundEdit object is produced when its first token ranks among the top K next "
                             "tokens (default: 10)")
    parser.add_argument("--limit", type=_positive_int, default=argparse.SUPPRESS,
                        help="only the first N records of each split (a trial run; resumable without it)")
    parser.set_defaults(handler=_build_suite)


def _build_suite(args: argparse.Namespace) -> int:
    # Imported here: torch and transformers take seconds to import, which the other commands do not need.
    from .models import load_model
    from .suite_builder import MANIFEST, BuildSettings, build_suite, check_request

    splits = tuple(s.strip() for s in args.splits.split(",") if s.strip())
    check_request(args.source, args.out, splits)
    names = ("batch_size", "max_new_tokens", "top_k", "limit")
    settings = BuildSettings(**{name: getattr(args, name) for name in names if hasattr(args, name)})
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


#: One entry per subcommand: adds its parser to the ``kedit`` subparsers.
SUBCOMMANDS: tuple[Callable[[Any], None], ...] = (_add_report, _add_check_data, _add_build_suite)


def build_parser() -> argparse.ArgumentParser:
    """The ``kedit`` argument parser with every subcommand of :data:`SUBCOMMANDS`."""
    parser = _Parser(prog="kedit", description="Tools of pytest-kedit, the knowledge-editing pitfalls benchmark.")
    subparsers = parser.add_subparsers(title="commands", dest="command", required=True, metavar="COMMAND")
    for add in SUBCOMMANDS:
        add(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run ``kedit`` with ``argv`` (default: ``sys.argv[1:]``); return the exit status."""
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:  # --help, or a bad command line already reported in one line
        return exc.code if isinstance(exc.code, int) else 0
    try:
        return args.handler(args)
    except KeditError as exc:
        print(f"kedit: error: {exc}", file=sys.stderr)
        return USAGE_ERROR
