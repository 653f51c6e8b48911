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

from . import report
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
        description="Print Table 1 and Table 2 with one row per model × method found in the "
                    "report directories (a later directory wins for a repeated model × method).",
    )
    parser.add_argument("dirs", nargs="+", type=Path, metavar="DIR", help="a run's report directory")
    parser.add_argument("--out", type=Path, metavar="DIR",
                        help="also write table1.md and table2.md into DIR")
    parser.set_defaults(handler=_report)


def _report(args: argparse.Namespace) -> int:
    table1_md, table2_md = report.merge_runs(args.dirs)
    if args.out is not None:
        report.write_tables(args.out, table1_md, table2_md)
    print(f"{table1_md}\n\n{table2_md}")
    return 0


#: One entry per subcommand: adds its parser to the ``kedit`` subparsers.
SUBCOMMANDS: tuple[Callable[[Any], None], ...] = (_add_report,)


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
