"""The visual report: one self-contained HTML page with the paper's tables and figures for
one or several runs (``kedit report RUN... --html OUT.html``, ``--kedit-html=PATH``).

The page has no script and loads nothing: its style is inline and every figure an inline SVG
(:mod:`pytest_kedit.report.figures`), so it opens from disk in any browser. This module lays out
the page (style, header, navigation) around its sections (:mod:`pytest_kedit.report.sections`), the
paired comparison only with several runs, the curves of sequential editing only with streams. ``kedit docs report`` tells how to read each figure. Every
number is computed by :mod:`pytest_kedit.report.figure_data` from the records, as the Markdown
tables compute them.

:mod:`pytest_kedit.report.figures` needs matplotlib (the ``html`` extra), which nothing else in the
package does: the functions that draw import it, so this module and :func:`require_matplotlib`
import without it.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Mapping, Sequence
from html import escape
from importlib.metadata import version
from pathlib import Path

from pytest_kedit.errors import KeditError
from pytest_kedit.report import sections
from pytest_kedit.report.figure_data import distortion_cases, report_runs
from pytest_kedit.results.record import CaseRecord
from pytest_kedit.results.summary import RunSummary
from pytest_kedit.storage.atomic import atomic_write_text

#: The one-line error when matplotlib is not installed.
MISSING_EXTRA = "the HTML report needs matplotlib: pip install 'pytest-kedit[html]'"
#: The sections of the page: (id, heading), in order; the comparison only with two runs or more.
SECTIONS = (
    ("tables", "Table 1 and Table 2"),
    ("cells", "Per-cell comparison"),
    ("streams", "Sequential editing: the curves"),
    ("figure5", "Figure 5: the true objects of a RoundEdit case"),
    ("conflict", "ConflictEdit at a glance"),
    ("relations", "Per relation"),
    ("comparison", "Paired comparison with the first run"),
    ("provenance", "Provenance"),
)

_STYLE = """
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: #222; margin: 0 auto;
       max-width: 1200px; padding: 0 1.5em 3em; }
h1 { margin-top: 1em; } h2 { border-bottom: 1px solid #ccc; padding-bottom: .2em; margin-top: 2em; }
nav ul { padding-left: 1.2em; columns: 2; }
table { border-collapse: collapse; margin: .6em 0; font-variant-numeric: tabular-nums; }
th, td { border: 1px solid #d0d0d0; padding: .25em .55em; vertical-align: top; }
th { background: #f3f3f3; } td.num { text-align: right; white-space: nowrap; }
td.model { font-style: italic; background: #fafafa; }
.ci { display: block; color: #666; font-size: 85%; }
figure { margin: 1.2em 0; overflow-x: auto; } .row { display: flex; flex-wrap: wrap; gap: 0 2.5em; }
figure svg { max-width: 100%; height: auto; } figure svg * { stroke-linejoin: round; stroke-linecap: butt; }
figcaption { color: #444; font-size: 90%; max-width: 60em; }
.note { color: #555; font-size: 90%; max-width: 60em; }
.warning { color: #8a1c1c; }
.key { display: inline-block; width: .9em; height: .9em; margin: 0 .3em 0 .2em; vertical-align: -.1em; }
table.facts { table-layout: fixed; width: 100%; } table.facts th:first-child { width: 10em; }
table.facts td { overflow-wrap: anywhere; font-size: 90%; } code { font-size: 90%; }
"""


def require_matplotlib() -> None:
    """Raise KeditError (:data:`MISSING_EXTRA`) when matplotlib cannot be imported."""
    if importlib.util.find_spec("matplotlib") is None:
        raise KeditError(MISSING_EXTRA)


def write_html_report(path: str | os.PathLike[str],
                      runs: Mapping[tuple[str, str], tuple[RunSummary, Sequence[CaseRecord]]],
                      sources: Mapping[tuple[str, str], Sequence[str]] | None = None,
                      cases: Sequence[str] = ()) -> int:
    """Write :func:`html_report` to ``path`` (atomically, its folder created); return its size in bytes."""
    page = html_report(runs, sources, cases)
    target = Path(path)
    try:
        atomic_write_text(target, page)
    except OSError as exc:
        raise KeditError(f"{target}: cannot write: {exc.strerror or exc}") from None
    return len(page.encode("utf-8"))


def html_report(runs: Mapping[tuple[str, str], tuple[RunSummary, Sequence[CaseRecord]]],
                sources: Mapping[tuple[str, str], Sequence[str]] | None = None, cases: Sequence[str] = ()) -> str:
    """The page for ``runs`` (``(model, method) -> (summary, records)``, the rows in that order,
    as :class:`~pytest_kedit.results.run_files.Runs` holds them), ``sources`` naming the folders each run
    was read from, and ``cases``: RoundEdit case ids to add to Figure 5's default cases.

    Raises KeditError without matplotlib, without runs, or for a requested case no run has as
    a RoundEdit case.
    """
    require_matplotlib()
    rows = report_runs(runs, sources)
    choices = distortion_cases(rows, cases)
    bodies = [
        ("tables", sections.tables_section(rows)),
        ("cells", sections.cells_section(rows)),
        ("streams", sections.streams_section(rows)),
        ("figure5", sections.figure5_section(rows, choices)),
        ("conflict", sections.conflict_section(rows)),
        ("relations", sections.relations_section(rows)),
        ("comparison", sections.comparison_section(rows) if len(rows) > 1 else None),
        ("provenance", sections.provenance_section(rows)),
    ]
    headings = dict(SECTIONS)
    shown = [(name, body) for name, body in bodies if body is not None]
    nav = "".join(f'<li><a href="#{name}">{escape(headings[name])}</a></li>' for name, _ in shown)
    body = "".join(f'<section id="{name}"><h2>{escape(headings[name])}</h2>{content}</section>' for name, content in shown)
    title = "pytest-kedit report: " + ", ".join(f"{run.model} × {run.method}" for run in rows)
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{escape(title)}</title><style>{_STYLE}</style></head><body>"
            f"<header><h1>{escape(title)}</h1><p class=\"note\">Made by pytest-kedit {escape(version('pytest-kedit'))} "
            f"from {len(rows)} run{'s' if len(rows) != 1 else ''}. The paper: <i>Unveiling the Pitfalls of Knowledge "
            f"Editing for Large Language Models</i>. How to read every figure: <code>kedit docs report</code>.</p>"
            f"<nav><ul>{nav}</ul></nav></header>{body}</body></html>\n")
