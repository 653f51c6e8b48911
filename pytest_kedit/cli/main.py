"""The ``kedit`` command.

Each subcommand is one ``add_<name>`` function, in the module of its group (``runs``, ``data``,
``baseline_gate``, ``mend``, ``init_project``, ``docs``), that adds its parser and sets ``handler``
(a function of the parsed arguments returning the exit status); list it in ``SUBCOMMANDS``. A user
error (:class:`~pytest_kedit.errors.KeditError` or a bad command line) prints one line
``kedit: error: ...`` on stderr and exits with status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from importlib.metadata import version
from typing import Any, NoReturn

from pytest_kedit.cli.baseline_gate import add_baseline, add_gate
from pytest_kedit.cli.data import add_build_suite, add_check_data, add_compose_stream
from pytest_kedit.cli.docs import add_docs
from pytest_kedit.cli.init_project import add_init
from pytest_kedit.cli.mend import add_train_mend
from pytest_kedit.cli.runs import add_compare, add_metrics, add_report
from pytest_kedit.errors import KeditError

USAGE_ERROR = 2
#: The status of a command whose output pipe was closed: 128 + SIGPIPE, as a shell reports a process SIGPIPE ended.
BROKEN_PIPE = 141


class _Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line, ``kedit: error: ...``."""

    def error(self, message: str) -> NoReturn:
        self.exit(USAGE_ERROR, f"kedit: error: {message} (see 'kedit --help')\n")


#: One entry per subcommand: adds its parser to the ``kedit`` subparsers.
SUBCOMMANDS: tuple[Callable[[Any], None], ...] = (add_report, add_metrics, add_check_data, add_compose_stream, add_build_suite, add_compare,
                                                  add_baseline, add_gate, add_train_mend, add_init, add_docs)


def build_parser() -> argparse.ArgumentParser:
    """The ``kedit`` argument parser with every subcommand of :data:`SUBCOMMANDS`."""
    parser = _Parser(prog="kedit", description="Tools of pytest-kedit, the knowledge-editing pitfalls benchmark.")
    parser.add_argument("--version", action="version", version=f"kedit (pytest-kedit) {version('pytest-kedit')}")
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
