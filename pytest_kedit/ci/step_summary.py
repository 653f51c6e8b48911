"""GitHub Actions' job summary: Markdown appended to the file ``GITHUB_STEP_SUMMARY`` names.

GitHub sets ``GITHUB_STEP_SUMMARY`` in every step of a job to a file whose Markdown it shows on
the run's summary page. At the end of a run the controller appends its Table 1 / Table 2 and, when
there are gates, their results (:func:`run_markdown`). Outside GitHub Actions the variable is
unset and nothing is written.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

from pytest_kedit.errors import KeditError

#: The environment variable GitHub Actions sets to the step's summary file.
STEP_SUMMARY_VARIABLE = "GITHUB_STEP_SUMMARY"


def append_step_summary(markdown: str, environ: Mapping[str, str] = os.environ) -> Path | None:
    """Append ``markdown`` and a blank line to the file ``environ[GITHUB_STEP_SUMMARY]`` names and
    return its path; None, writing nothing, when the variable is unset or empty. Raises
    KeditError naming the file when it cannot be written."""
    name = environ.get(STEP_SUMMARY_VARIABLE)
    if not name:
        return None
    path = Path(name)
    try:
        with path.open("a", encoding="utf-8") as summary:
            summary.write(markdown.rstrip("\n") + "\n\n")
    except OSError as exc:
        raise KeditError(f"{STEP_SUMMARY_VARIABLE}={path}: cannot append the job summary: {exc.strerror or exc}") from None
    return path


def run_markdown(title: str, tables: Sequence[str], gates: str = "") -> str:
    """The job summary of a run: ``title`` as a level-2 heading, each table (Markdown, as
    :mod:`pytest_kedit.results.tables` writes them) and, when not empty, the gates' block."""
    return "\n\n".join([f"## {title}", *tables, *([gates] if gates else [])])
