"""What the end of a session prints after pytest's own summary, step by step: the run's tables,
notes on the cases and the files written, the baseline's lines and the gates; and what it
appends to GitHub's job summary. Each step gives its lines as :data:`Line` (text, red or not)
for the plugin to write, in the order :func:`run_lines` puts them.
"""

from __future__ import annotations

from collections.abc import Sequence

from pytest_kedit.benchmark.registry import BENCHMARKS, splits_of
from pytest_kedit.ci.gates import gates_markdown
from pytest_kedit.ci.step_summary import append_step_summary, run_markdown
from pytest_kedit.errors import KeditError
from pytest_kedit.results.run_files import RunReport
from pytest_kedit.results.tables import threshold_summary, timing_summary
from pytest_kedit.run.options import KeditOptions
from pytest_kedit.run.session import Collector, SessionVerdict

#: A line of the terminal summary and whether it reports a problem (written red).
Line = tuple[str, bool]


def heading(run: RunReport, options: KeditOptions) -> str:
    """The title of the summary's section: ``kedit: MODEL × METHOD (protocol: NAME)``, and
    ``, carrying K edits`` in the parentheses with ``--kedit-carry=K``."""
    carrying = f", carrying {options.stream.carry} edits" if options.stream.carry else ""
    return f"kedit: {run.summary.model} × {run.summary.method} (protocol: {options.protocol.name}{carrying})"


def run_lines(collector: Collector, run: RunReport, verdict: SessionVerdict | None) -> list[Line]:
    """Everything under the heading, in order: :func:`table_lines`, :func:`case_notes`,
    :func:`html_lines` (which writes the visual report), :func:`verdict_lines` and
    :func:`step_summary_lines` (which appends the job summary)."""
    options = collector.options
    paper = paper_tables(run)
    return [*table_lines(run, options, paper), *case_notes(collector), *html_lines(run, options),
            *verdict_lines(verdict, options), *step_summary_lines(run, paper, verdict, options)]


def paper_tables(run: RunReport) -> list[str]:
    """Table 1, Table 2 and Table 3 (streams), each when the run has a split of its benchmark."""
    splits = {record.split for record in run.records}
    tables = (run.table1, run.table2, run.table3)
    return [table for benchmark, table in zip(BENCHMARKS, tables, strict=True) if splits & set(splits_of(benchmark))]


def table_lines(run: RunReport, options: KeditOptions, paper: Sequence[str]) -> list[Line]:
    """The sample's line (``--kedit-sample``), then each block followed by a blank line: the
    ``paper`` tables, the per-relation breakdown (``--kedit-by-relation``), the threshold counts
    and the timings."""
    lines: list[Line] = []
    if options.sample is not None:
        lines += [(f"stratified sample of {options.sample} cases per split (by relation, seed {options.seed})", False),
                  ("", False)]
    blocks = [*paper, *([run.relations] if options.by_relation else []),
              threshold_summary(run.records, options.thresholds), timing_summary(run.summary)]
    for block in blocks:
        if block:
            lines += [(line, False) for line in block.splitlines()] + [("", False)]
    return lines


def case_notes(collector: Collector) -> list[Line]:
    """How many cases could not run for bad data (red), how many a resumed run reported from
    their records, and the report folder written (or, red, why not)."""
    options, lines = collector.options, []
    if collector.bad_data:
        lines.append((f"{collector.bad_data} case{'s' if collector.bad_data != 1 else ''} could not run: bad data "
                      "(the errors above; not counted as threshold failures)", True))
    if options.resume:
        lines.append((f"resumed {options.report}: {collector.reused} cases reported from their records, "
                      f"{len(collector.records) - collector.reused} run", False))
    if collector.report_error is not None:
        lines.append((f"kedit: report {options.report} not written: {collector.report_error} "
                      "(the cases it already held are kept)", True))
    elif options.report:
        lines.append((f"report written to {options.report}", False))
    return lines


def terminated_line(collector: Collector, run: RunReport) -> Line:
    """What a run stopped by SIGTERM (:mod:`pytest_kedit.run.termination`) kept, and how to go on."""
    done, report = len(run.records), collector.options.report
    if not report or collector.report_error is not None:
        return "kedit: stopped by SIGTERM, as by Ctrl-C", True
    return (f"kedit: stopped by SIGTERM, as by Ctrl-C: {done} finished case{'' if done == 1 else 's'} kept in "
            f"{report}, --kedit-resume continues the run"), True


def html_lines(run: RunReport, options: KeditOptions) -> list[Line]:
    """With ``--kedit-html``: write the visual report of the run and say so, or say in red why it
    was not written."""
    if not options.html:
        return []
    # Imported only when asked for: the visual report brings in scipy.stats and matplotlib.
    from pytest_kedit.report.html import write_html_report

    key = (run.summary.model, run.summary.method)
    try:
        write_html_report(options.html, {key: (run.summary, run.records)}, {key: [options.report] if options.report else []})
    except KeditError as exc:
        return [(f"kedit: visual report not written: {exc}", True)]
    return [(f"visual report written to {options.html}", False)]


def verdict_lines(verdict: SessionVerdict | None, options: KeditOptions) -> list[Line]:
    """The baseline's lines, then the gates' Markdown, its ``Gates:`` line red when the session
    fails on them; nothing before the session has been judged."""
    if verdict is None:
        return []
    gates = gates_markdown(verdict.gates, options.gate_mode)
    return [*verdict.lines, *((line, verdict.failed and line.startswith("Gates:")) for line in gates.splitlines())]


def step_summary_lines(run: RunReport, paper: Sequence[str], verdict: SessionVerdict | None,
                       options: KeditOptions) -> list[Line]:
    """Under GitHub Actions (``GITHUB_STEP_SUMMARY`` set): append the ``paper`` tables and the
    gates to the job summary; a file that cannot be written is a red line, not a lost run."""
    summary = run.summary
    shard = f" (shard {summary.shard})" if summary.shard is not None else ""
    gates = gates_markdown(verdict.gates, options.gate_mode) if verdict else ""
    try:
        append_step_summary(run_markdown(f"kedit: {summary.model} × {summary.method}{shard}", paper, gates))
    except KeditError as exc:
        return [(f"kedit: {exc}", True)]
    return []
