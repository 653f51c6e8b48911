"""The sections of the visual report's page (:mod:`pytest_kedit.report.html` lays them out): each
a function of the report's runs returning the section's HTML, its tables and figures each a
promised item (``<figure class="kedit-item" data-item=...>``) with its caption.

Table 1 and Table 2 with their intervals, one row per model × method; per split, the runs' means
side by side; Figure 5 for chosen RoundEdit cases; ConflictEdit's p(k_n) against p(k_o) case by
case; the curves of sequential editing; every metric per relation; each run against the first (paired differences, flipped
cases); the provenance of every run. Every number comes from
:mod:`pytest_kedit.report.figure_data`; the figures are drawn by :mod:`pytest_kedit.report.figures`,
imported by the functions that draw, as it needs matplotlib.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from html import escape
from typing import Any

from pytest_kedit.benchmark.registry import BENCHMARKS, METRICS, SEQUENTIAL, SPLITS, Benchmark, table_columns
from pytest_kedit.report.figure_data import (
    BATCH_METRIC,
    COLLAPSE_LEVELS,
    CaseChoice,
    PairedComparison,
    ReportRun,
    conflict_panels,
    distortion_panel,
    paired_comparisons,
    relation_heatmaps,
    round_edit_labels,
    splits_run,
    stream_curves,
)
from pytest_kedit.results.tables import DASH, INTERVAL_METHOD, SCALING_LABELS


def _figure(item: str, content: str, caption: str) -> str:
    """One promised item of the page: ``content`` (a table or an SVG) and its caption."""
    return f'<figure class="kedit-item" data-item="{item}"><figcaption>{caption}</figcaption>{content}</figure>'


# -- Tables -------------------------------------------------------------------------------------

def tables_section(rows: Sequence[ReportRun]) -> str:
    parts = []
    for benchmark in BENCHMARKS:
        splits = splits_run(rows, benchmark)
        if not splits:
            continue
        notes = [_cases_line(rows, splits)]
        if benchmark.table == 2:
            notes.append(_scaling_line(rows))
        notes.append(escape(INTERVAL_METHOD))
        plain = [METRICS[metric].label for _, metric, _ in table_columns(benchmark) if _as_it_is(benchmark, metric)]
        scale = f"shares ×100, {', '.join(plain)} as they are, as in table3.md" if plain else "×100"
        parts.append(_figure(f"table{benchmark.table}", _benchmark_table(benchmark, rows),
                             f"<b>{escape(benchmark.title)}</b> (mean over cases {escape(scale)}; under each mean its "
                             f"95% interval). " + " ".join(notes)))
    return "".join(parts) or '<p class="note">No cases.</p>'


def _as_it_is(benchmark: Benchmark, metric: str) -> bool:
    """Whether the benchmark's table shows the metric as it is rather than ×100: Table 3's ratios
    and counts (``Metric.percent`` false), as :func:`~pytest_kedit.results.tables.table3` does."""
    return benchmark is SEQUENTIAL and not METRICS[metric].percent


def _benchmark_table(benchmark: Benchmark, rows: Sequence[ReportRun]) -> str:
    """The benchmark's table laid out as in the Markdown report: a row per model, then a row per
    method of that model; a cell is the mean (2 decimals) over its interval (1 decimal, 2 for a
    metric shown as it is: :func:`_as_it_is`)."""
    columns = table_columns(benchmark)
    header = "".join(f"<th>{escape(label)} {METRICS[metric].arrow}</th>"
                     for _, metric, label in columns)
    body = []
    for model in dict.fromkeys(run.model for run in rows):
        body.append(f'<tr><td class="model" colspan="{len(columns) + 1}">{escape(model)}</td></tr>')
        for run in (run for run in rows if run.model == model):
            cells = []
            for split, metric, _ in columns:
                mean = run.result.get(split, {}).get(metric)
                if mean is None:
                    cells.append(f'<td class="num">{DASH}</td>')
                    continue
                low, high = run.bounds[split][metric]
                if _as_it_is(benchmark, metric):
                    mean, low, high, digits = mean / 100, low / 100, high / 100, 2
                else:
                    digits = 1
                cells.append(f'<td class="num" data-split="{split}" data-metric="{metric}">'
                             f'<span class="mean">{mean:.2f}</span><span class="ci">[{low:.{digits}f}, {high:.{digits}f}]</span></td>')
            body.append(f"<tr><th>{escape(run.method)}</th>{''.join(cells)}</tr>")
    return f"<table><thead><tr><th>Method</th>{header}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _cases_line(rows: Sequence[ReportRun], splits: Sequence[str]) -> str:
    """Cases per split and row (errors named): the n behind every mean."""
    per_row = []
    for run in rows:
        counts = []
        for split in splits:
            entry = run.result.get(split)
            if entry is None:
                counts.append(f"{split} {DASH}")
            else:
                errors = int(entry["error"])
                counts.append(f"{split} {int(entry['cases'])}" + (f" ({errors} error{'s' if errors != 1 else ''})"
                                                                   if errors else ""))
        per_row.append((run.label, ", ".join(counts)))
    if len({counts for _, counts in per_row}) == 1:
        listed = per_row[0][1]
    else:
        listed = "; ".join(f"{label}: {counts}" for label, counts in per_row)
    return f"Cases per split (errors are left out of the means): {escape(listed)}."


def _scaling_line(rows: Sequence[ReportRun]) -> str:
    scalings = {run.label: run.summary.distortion_scaling for run in rows}
    if len(set(scalings.values())) == 1:
        scaling = next(iter(scalings.values()))
        return f"D scaling: {escape(SCALING_LABELS.get(scaling, scaling))}."
    listed = ", ".join(f"{label}: {scaling}" for label, scaling in scalings.items())
    return (f'<span class="warning">D scaling differs between rows ({escape(listed)}): their D values are not '
            f"comparable.</span>")


# -- Figures ------------------------------------------------------------------------------------

def cells_section(rows: Sequence[ReportRun]) -> str:
    from pytest_kedit.report import figures

    parts = [_figure("cell-comparison", figures.cell_chart(f"cells-{split}", split, rows),
                     f"<b>{escape(SPLITS[split].title)}</b> ({split}): "
                     "a bar per run and metric, its mean ×100 printed on it, the whisker its 95% bootstrap "
                     "interval; ↑ higher is better, ↓ lower is better.")
             for split in splits_run(rows)]
    return "".join(parts) or '<p class="note">No cases.</p>'


def figure5_section(rows: Sequence[ReportRun], choices: Sequence[CaseChoice]) -> str:
    from pytest_kedit.report import canvas as figure_canvas
    from pytest_kedit.report import figures

    if not choices:
        return '<p class="note">No RoundEdit case in these runs.</p>'
    labels = {run.label: round_edit_labels(run.summary) for run in rows}
    notes = [f"{escape(label)}: o1 and o* are not named because {escape(found.unavailable)}."
             for label, found in labels.items() if found.unavailable]
    key = {"theta": "θ, the model before the edits", "theta_m": "θm, after e1 (o1 → o*): probed for o1 and o* only",
           "theta_prime": "θ', after e1 then the undo e2 (o* → o1)"}
    parts = ['<p class="note">Bars: p(o) of every true object o of the case and of the edit\'s target o*, in '
             + ", ".join(f'<span class="key" style="background:{figure_canvas.STATE_COLOURS[state]}"></span>{escape(text)}'
                         for state, text in key.items())
             + ". Ticks: o1 (bold) is the round-edited object; another true object is red when it lost probability "
             "from θ to θ' (counted by IR), green when it did not. D and IR ×100 as in Table 2. Hover a bar for its "
             "value.</p>"]
    parts += [f'<p class="note warning">{note}</p>' for note in notes]
    for choice in choices:
        panels = [distortion_panel(run.label, record, labels[run.label].labels.get(record.case_id))
                  for run in rows for record in run.records
                  if record.case_id == choice.case_id and record.split == choice.split and record.outcome != "error"]
        if not panels:
            continue
        relation = panels[0].relation or DASH
        unnamed = "; ".join(f"{panel.run}: p_θm(o1) = {panel.p_mid_o1:.4g}" for panel in panels if panel.p_mid_o1 is not None)
        caption = (f"<b>{escape(choice.case_id)}</b> ({escape(SPLITS[choice.split].heading)}, relation "
                   f"{escape(relation)}): {escape('; '.join(choice.reasons))}." + (f" {escape(unnamed)}." if unnamed else ""))
        parts.append(_figure("figure5", figures.distortion_figure(f"fig5-{choice.case_id}", panels), caption))
    return "".join(parts)


def conflict_section(rows: Sequence[ReportRun]) -> str:
    from pytest_kedit.report import figures

    panels = conflict_panels(rows)
    if not panels:
        return '<p class="note">No ConflictEdit case in these runs.</p>'
    index = {run.label: position for position, run in enumerate(rows)}
    parts = ['<p class="note">Every case after both edits (θ\'), on log scales: x the old fact k_o, y the new fact '
             "k_n. Above the dashed diagonal the new fact wins (the Conflict Score counts the case); below it the "
             "edit failed, by as many orders of magnitude as the point lies below. The legend gives each run's rate "
             "×100 (as in Table 1) and its count.</p>"]
    figures_html = []
    for panel in panels:
        name = f"{SPLITS[panel.split].heading} {METRICS[panel.metric].label}"
        figures_html.append(_figure("conflict-scatter",
                                    figures.conflict_scatter(f"conflict-{panel.split}-{panel.metric}", panel, index),
                                    f"<b>{escape(name)}</b> ({panel.split}): p_θ'(k_n) against p_θ'(k_o)."))
    return "".join(parts) + f'<div class="row">{"".join(figures_html)}</div>'


def streams_section(rows: Sequence[ReportRun]) -> str | None:
    """A figure per stream metric against the number of edits (:func:`stream_curves`); None when
    no run has a stream with a curve."""
    from pytest_kedit.report import figures

    panels = stream_curves(rows)
    if not panels:
        return None
    levels = " or ".join(f"{METRICS[metric].label} {'≥' if METRICS[metric].better == 'lower' else '<'} {level:g}"
                          for metric, level in COLLAPSE_LEVELS.items())
    parts = ['<p class="note">Each stream\'s metrics at every checkpoint, from its record\'s curve; a run\'s line is the '
             "mean over its streams. The <b>final</b> scheme scores every edit so far on the checkpoint's model, the "
             "<b>immediate</b> scheme each edit right after its batch: their figures are apart and never share an axis. "
             f"Dashed vertical lines: where a stream collapsed (the first checkpoint with {escape(levels)}), in its "
             "run's colour; the legend gives each run's collapse points. Shares ×100 as in Table 3, ratios as they "
             "are.</p>"]
    figures_html = []
    for panel in panels:
        metric = METRICS[panel.metric]
        when = "after every batch" if panel.metric == BATCH_METRIC else "at every checkpoint"
        level = "" if panel.collapse_level is None else f" Dotted: the collapse level, {panel.collapse_level:g}."
        figures_html.append(_figure("stream-curve", figures.stream_curve(f"curve-{panel.metric}", panel),
                                    f"<b>{escape(metric.label)}</b> {metric.arrow} {when}: {escape(metric.description)}."
                                    + level))
    return "".join(parts) + f'<div class="row">{"".join(figures_html)}</div>'


def relations_section(rows: Sequence[ReportRun]) -> str:
    from pytest_kedit.report import figures

    parts = [_figure("relation-heatmap", figures.relation_heatmap(f"relations-{heatmap.split}", heatmap),
                     f"<b>{escape(SPLITS[heatmap.split].title)}</b> "
                     f"({heatmap.split}) by relation: each cell the mean ×100 of the relation's cases; colour from the "
                     "worst (red) to the best (green) value of its column across the runs, in the metric's better "
                     "direction; grey: no case. The per-relation tables (relations.md, kedit report --by-relation) "
                     "give the intervals.")
             for heatmap in relation_heatmaps(rows)]
    return "".join(parts) or '<p class="note">No cases.</p>'


# -- Paired comparison --------------------------------------------------------------------------

def comparison_section(rows: Sequence[ReportRun]) -> str:
    from pytest_kedit.report import figures

    paired = paired_comparisons(rows)
    parts = [f'<p class="note">Each other run (B) against the first, <b>{escape(rows[0].label)}</b> (A), over the cases '
             "both ran without an error. B − A is the difference of the means on the tables' scale (×100 for shares and rates); its 95% interval a paired "
             "bootstrap over the shared cases; McNemar's exact test for 0/1 metrics. Whisker red: the interval lies "
             "on the metric's worse side (regressed); green: on its better side; grey: it holds 0.</p>"]
    parts += [f'<p class="note warning">{escape(p.run)} against {escape(p.baseline)} may not be comparable: '
              f"{escape(line)}.</p>" for p in paired for line in p.warnings]
    for split in splits_run(rows):
        if any(s.split == split and s.metrics for p in paired for s in p.comparison.splits):
            parts.append(_figure("paired-differences", figures.difference_chart(f"differences-{split}", split, paired),
                                 f"<b>{escape(SPLITS[split].title)}</b> "
                                 f"({split}): each run minus {escape(rows[0].label)}, with its 95% paired interval."))
    for p in paired:
        regressed = [f"{SPLITS[split].heading} {METRICS[metric].label}" for split, metric in p.comparison.regressions]
        parts.append(f"<h3>{escape(p.run)} against {escape(p.baseline)}</h3>"
                     f'<p class="note">Shared cases: '
                     + escape(", ".join(f"{s.split} {s.shared}" for s in p.comparison.splits))
                     + f". Regressed: {escape(', '.join(regressed)) if regressed else 'none'}.</p>"
                     + _differences_table(p) + _flipped_table(p))
    return "".join(parts)


def _differences_table(paired: PairedComparison) -> str:
    """The comparison's numbers, a row per split and metric, folded away under a summary line."""
    body = []
    for split in paired.comparison.splits:
        for m in split.metrics:
            flips = DASH if m.flips is None else f"{m.flips.pass_to_fail} / {m.flips.fail_to_pass}"
            p_value = DASH if m.mcnemar_p is None else f"{m.mcnemar_p:.3g}"
            body.append(f"<tr><td>{escape(split.split)}</td><td>{escape(METRICS[m.metric].label)}</td>"
                        f'<td class="num">{m.n}</td><td class="num">{m.mean_a:.2f}</td><td class="num">{m.mean_b:.2f}</td>'
                        f'<td class="num">{m.difference:+.2f}</td><td class="num">[{m.interval[0]:.1f}, {m.interval[1]:.1f}]'
                        f'</td><td class="num">{p_value}</td><td class="num">{flips}</td>'
                        f"<td>{'<b>yes</b>' if m.regressed else 'no'}</td></tr>")
    header = "".join(f"<th>{name}</th>" for name in ("split", "metric", "n", "A", "B", "B − A", "95% interval",
                                                     "McNemar p", "pass→fail / fail→pass", "regressed"))
    return (f"<details><summary>The differences of {escape(paired.run)} against {escape(paired.baseline)}</summary>"
            f"<table><thead><tr>{header}</tr></thead><tbody>{''.join(body)}</tbody></table></details>")


def _flipped_table(paired: PairedComparison) -> str:
    if not paired.flipped:
        return '<p class="note">No flipped case: every shared case has the same 0/1 metrics in both runs.</p>'
    body = "".join(f"<tr><td>{escape(f.split)}</td><td>{escape(f.case_id)}</td><td>{escape(f.relation or DASH)}</td>"
                   f"<td>{escape(METRICS[f.metric].label)}</td><td class=\"num\">{f.value_a:g} → {f.value_b:g}</td>"
                   f"<td>{'pass→fail' if f.value_a > f.value_b else 'fail→pass'}</td></tr>" for f in paired.flipped)
    header = "".join(f"<th>{name}</th>" for name in ("split", "case", "relation", "metric", "A → B", "flip"))
    return (f'<details><summary>{len(paired.flipped)} flipped case{"s" if len(paired.flipped) != 1 else ""} '
            f"(a 0/1 metric that differs between A and B)</summary>"
            f"<table><thead><tr>{header}</tr></thead><tbody>{body}</tbody></table></details>")


# -- Provenance ---------------------------------------------------------------------------------

def provenance_section(rows: Sequence[ReportRun]) -> str:
    """One table, a column per run: what ran, on what data, with which settings, how long it
    took and whether it finished. A fact a summary lacks is "–"."""
    summaries = [run.summary for run in rows]
    facts: list[tuple[str, list[Any]]] = [
        ("model", [summary.model for summary in summaries]),
        ("model source", [summary.model_source for summary in summaries]),
        ("model fingerprint", [summary.model_fingerprint for summary in summaries]),
        ("method", [summary.method for summary in summaries]),
        ("hyper-parameters file", [summary.hparams_file or "packaged defaults" for summary in summaries]),
        ("hyper-parameters", [summary.hparams for summary in summaries]),
        ("data source", [summary.data.source for summary in summaries]),
        ("data fingerprint", [summary.data.fingerprint for summary in summaries]),
        ("splits", [summary.splits for summary in summaries]),
        ("limit", [summary.limit for summary in summaries]),
        ("sample", [summary.sample for summary in summaries]),
        ("seed", [summary.seed for summary in summaries]),
        ("protocol", [summary.protocol for summary in summaries]),
        ("D scaling", [summary.distortion_scaling for summary in summaries]),
        ("thresholds", [summary.thresholds.specs() for summary in summaries]),
        ("device, dtype", [", ".join(value or DASH for value in (summary.device, summary.dtype)) for summary in summaries]),
        ("second-moment statistics", [summary.statistics for summary in summaries]),
        ("versions", [summary.versions for summary in summaries]),
        ("timings", [_timings(summary.timings) for summary in summaries]),
        ("cases", [_counts(summary.counts) for summary in summaries]),
        ("complete", ["yes" if summary.complete else "no: the run stopped before its last case" for summary in summaries]),
        ("report folders", [list(run.sources) for run in rows]),
    ]
    header = "".join(f"<th>{escape(run.model)} × {escape(run.method)}</th>" for run in rows)
    body = "".join(f"<tr><th>{escape(name)}</th>{''.join(f'<td>{_fact(value)}</td>' for value in values)}</tr>"
                   for name, values in facts)
    table = f'<table class="facts"><thead><tr><th></th>{header}</tr></thead><tbody>{body}</tbody></table>'
    return _figure("provenance", table, "Where each run's numbers come from (its summary.json).")


def _counts(counts: Mapping[str, Any] | None) -> str | None:
    if not counts:
        return None
    return ", ".join(f"{counts[key]} {key}" for key in ("cases", "passed", "failed", "xfailed", "error") if key in counts)


def _timings(timings: Mapping[str, Any] | None) -> str | None:
    """``model_load 2.1 s, edit 40.3 s, ...``: each phase in seconds with one decimal, counts as they are."""
    if not timings:
        return None
    return ", ".join(f"{name} {value:.1f} s" if isinstance(value, float) else f"{name} {value}"
                     for name, value in timings.items())


def _fact(value: Any) -> str:
    """A summary value as HTML: "–" when absent, an object as JSON, a list joined."""
    if value is None or value == {} or value == []:
        return DASH
    if isinstance(value, Mapping):
        return f"<code>{escape(json.dumps(value, sort_keys=True, default=str))}</code>"
    if isinstance(value, Iterable) and not isinstance(value, str):
        return escape(", ".join(str(item) for item in value))
    return escape(str(value))
