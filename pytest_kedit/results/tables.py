"""The Markdown tables of a run: the paper's Table 1 and Table 2 with their interval tables,
the per-relation breakdown, the threshold counts and the timings.

Columns come from :func:`pytest_kedit.benchmark.registry.table_columns` and labels from
:data:`pytest_kedit.benchmark.registry.METRICS`, so a metric added to a split in the registry gets its
column everywhere. Tables are pipe tables (:mod:`tabulate`): first column left-aligned, the
others right-aligned; means with 2 decimals, intervals ``[low, high]`` with 1 decimal, "–"
for a value that is not there.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

from tabulate import tabulate

from pytest_kedit.benchmark.metrics import BOOTSTRAP_CONFIDENCE, BOOTSTRAP_RESAMPLES, BOOTSTRAP_SEED
from pytest_kedit.benchmark.registry import (
    CONFLICT_EDIT,
    METRICS,
    ROUND_EDIT,
    SEQUENTIAL,
    SPLITS,
    Benchmark,
    split_order,
    splits_of,
    table_columns,
)
from pytest_kedit.benchmark.thresholds import Thresholds
from pytest_kedit.results.aggregation import (
    COUNT_KEYS,
    Aggregate,
    Interval,
    Intervals,
    aggregate,
    arity_of,
    group_records,
    intervals,
    relation_of,
    run_counts,
    sorted_records,
)
from pytest_kedit.results.record import CaseRecord
from pytest_kedit.results.summary import RunSummary

#: A value that is not there, in every table and page of the package.
DASH = "–"
#: What each D scaling is, for the line under Table 2 and the per-relation tables.
SCALING_LABELS = {
    "paper": "paper JS (natural log)",
    "upstream": "upstream JS/|Obj| (the factor carried by the published Table 2)",
}
_PERCENT = f"{100 * BOOTSTRAP_CONFIDENCE:g}%"
#: The line under every interval table.
INTERVAL_METHOD = (f"{_PERCENT} intervals: percentile bootstrap over the cases of each cell (errors excluded), "
                   f"{BOOTSTRAP_RESAMPLES} resamples with replacement, seed {BOOTSTRAP_SEED}; the middle {_PERCENT} "
                   "of the resampled means ×100.")
_PHASES = (("model_load", "model load"), ("edit", "edits"), ("probe", "probes"), ("restore", "restore"))

#: (split, metric, header) of one numeric column.
Column = tuple[str, str, str]


class TableRow(NamedTuple):
    """One row of Table 1 / Table 2: a model × method and its :func:`aggregate` result."""

    model: str
    method: str
    result: Aggregate


def table1(rows: Sequence[TableRow], bounds: Sequence[Intervals] | None = None,
           protocols: Sequence[str] | None = None) -> str:
    """Table 1 (Knowledge Conflict, the ConflictEdit splits) as Markdown, laid out like the paper.

    Under the title, a table with a column per ``table_columns(CONFLICT_EDIT)`` (Single Succ,
    then each split's metrics) and rows grouped by model: a ``*model*`` line, then one line per
    method, models and methods in order of first appearance; a split the row did not run shows
    "–". A line under it gives the number of cases per split. With ``bounds`` (one
    :data:`Intervals` per row), a second table follows with the same rows and columns and the
    intervals as cells, then :data:`INTERVAL_METHOD`. With ``protocols`` (the ``--kedit-protocol``
    of each row), the title names the protocol, or says MIXED and marks each row with its own.
    """
    return _benchmark_table(CONFLICT_EDIT, rows, [""] * len(rows), (), bounds, protocols)


def table2(rows: Sequence[TableRow], scaling: str | Sequence[str], bounds: Sequence[Intervals] | None = None,
           protocols: Sequence[str] | None = None) -> str:
    """Table 2 (Knowledge Distortion, the RoundEdit splits) as Markdown, laid out like :func:`table1`.

    ``scaling`` is the D scaling (a key of :data:`SCALING_LABELS`) of every row, or one per row;
    a line under the table names it. When rows that ran a RoundEdit split differ in scaling,
    those rows are marked ``(D: paper)`` / ``(D: upstream)`` in both tables and the line says
    that their D values are not comparable. Raises ValueError for an unknown scaling or a
    count of scalings other than the rows'. ``protocols`` as in :func:`table1`.
    """
    scalings = [scaling] * len(rows) if isinstance(scaling, str) else list(scaling)
    if len(scalings) != len(rows):
        raise ValueError(f"table2: {len(scalings)} scalings for {len(rows)} rows")
    for name in scalings:
        if name not in SCALING_LABELS:
            raise ValueError(f"table2: unknown D scaling {name!r} (expected {' or '.join(map(repr, SCALING_LABELS))})")
    distorted = [index for index, row in enumerate(rows) if _ran(row.result, ROUND_EDIT)]
    distinct = sorted({scalings[index] for index in distorted or range(len(rows))})
    marks = [""] * len(rows)
    if len(distinct) > 1:
        for index in distorted:
            marks[index] = f" (D: {scalings[index]})"
        scaling_line = ("D scaling: MIXED, rows are marked (paper = JS, upstream = JS/|Obj|); "
                        "D values of different scalings are not comparable.")
    else:
        scaling_line = f"D scaling: {SCALING_LABELS[distinct[0]] if distinct else DASH}."
    return _benchmark_table(ROUND_EDIT, rows, marks, (scaling_line,), bounds, protocols)


def table3(rows: Sequence[TableRow], protocols: Sequence[str] | None = None) -> str:
    """Table 3 (Sequential editing) as Markdown, laid out like :func:`table1`: a column per metric
    of the sequential split, a cell the mean over the row's streams of their last checkpoint's
    value (and collapse point), ×100 for a share and as it is for a metric that is not
    (``Metric.percent``: the PPL ratio, the update norm, the collapse point), which a line under
    the table says; then the cases line. No interval table: a run holds a stream or two.
    ``protocols`` as in :func:`table1`."""
    protocol_title, marks = _protocol_marks(protocols, [""] * len(rows))
    columns = table_columns(SEQUENTIAL)
    plain = [METRICS[metric].label for _, metric, _ in columns if not METRICS[metric].percent]

    def cell(metric: str, value: float) -> str:
        return _number(METRICS[metric].on_scale(value))

    return "\n\n".join([
        f"{SEQUENTIAL.title} (mean over streams of the last checkpoint{protocol_title})",
        _markdown(["Method", *(label for _, _, label in columns)], _grouped_body(rows, columns, marks, cell)),
        f"Shares ×100; {', '.join(plain)} as they are (and so in gates).",
        _cases_line(rows, splits_of(SEQUENTIAL)),
    ])


def paper_tables(rows: Sequence[TableRow], scalings: Sequence[str], bounds: Sequence[Intervals],
                 protocols: Sequence[str] | None = None) -> tuple[str, str]:
    """Table 1 and Table 2, each with its interval table (``bounds``: one per row), for rows
    with the given D scalings and protocols (one per row)."""
    return table1(rows, bounds, protocols), table2(rows, scalings, bounds, protocols)


def relation_table(records: Sequence[CaseRecord], scaling: str | None = None) -> str:
    """Every metric of every split broken down by relation and, for RoundEdit, by arity.

    For each split with non-error cases (registry order): a table with one row per relation
    (:func:`~pytest_kedit.results.aggregation.relation_of`) and, for a RoundEdit split, one per arity
    (:func:`~pytest_kedit.results.aggregation.arity_of`), rows in natural order. Columns: n, the
    group's non-error cases, and per metric of the split ``mean [low, high]`` as in the paper
    tables, "–" when no case of the group has the metric. Then :data:`INTERVAL_METHOD` and,
    when ``scaling`` is given and a RoundEdit split is shown, the D scaling. "no cases" when
    every record is an error.
    """
    ordered = [record for record in sorted_records(records) if record.outcome != "error"]
    splits = sorted({record.split for record in ordered}, key=split_order)
    if not splits:
        return "no cases"
    parts = [f"Per relation: mean over cases ×100 [{_PERCENT} interval], errors excluded"]
    for split in splits:
        cases = [record for record in ordered if record.split == split]
        parts += [f"{split} by relation", _group_table(split, "Relation", group_records(cases, relation_of, DASH))]
        if SPLITS[split].benchmark is ROUND_EDIT:
            parts += [f"{split} by arity (1-N: N true objects)",
                      _group_table(split, "Arity", group_records(cases, arity_of, DASH))]
    parts.append(INTERVAL_METHOD)
    if scaling is not None and any(SPLITS[split].benchmark is ROUND_EDIT for split in splits):
        parts.append(f"D scaling: {SCALING_LABELS[scaling]}.")
    return "\n\n".join(parts)


def threshold_summary(records: Sequence[CaseRecord], thresholds: Thresholds) -> str:
    """Per split (and in total): cases, passed, failed, error, xfailed (only when a case is: a
    run gated against a baseline), and per metric with a threshold in the split,
    ``passed/checked`` (see :func:`~pytest_kedit.results.aggregation.run_counts`)."""
    counts = run_counts(records, thresholds)
    keys = [key for key in COUNT_KEYS if key != "xfailed" or counts[key]]
    body = []
    for split, entry in counts["splits"].items():
        tallies = entry["thresholds"]
        passed = ", ".join(f"{METRICS[metric].label} {tally['passed']}/{tally['checked']}"
                           for metric, tally in tallies.items())
        body.append([split, *(str(entry[key]) for key in keys), passed or DASH])
    body.append(["all", *(str(counts[key]) for key in keys), ""])
    return _markdown(["Split", *(key.capitalize() for key in keys), "Threshold passed/checked"], body)


def timing_summary(summary: RunSummary) -> str:
    """Where the time went: model load, edits, probes, restore, other and total.

    Seconds, share of the total and seconds per case (the cases of the summary's ``counts``; "–"
    without them). "other" is the wall-clock total minus the phases. When the phases add up to
    more than the wall-clock total (parallel workers), shares are of the phases' sum and a line
    says so.
    """
    timings = summary.timings
    seconds = {label: float(timings.get(key, 0.0)) for key, label in _PHASES}
    phases = sum(seconds.values())
    total = float(timings.get("total", phases))
    seconds["other"] = max(total - phases, 0.0)
    whole = max(total, phases)
    cases = int((summary.counts or {}).get("cases", 0))

    def line(label: str, value: float, share: str) -> list[str]:
        return [label, _number(value), share, _number(value / cases) if cases else DASH]

    body = [line(label, value, f"{100 * value / whole:.1f}%" if whole else DASH) for label, value in seconds.items()]
    body.append(line("total", total, "100.0%" if whole == total and total else DASH))
    text = _markdown(["Phase", "Seconds", "% of total", "s/case"], body)
    if phases > total:
        text += "\n\nThe phases add up to more than the wall-clock total (parallel workers); % are of their sum."
    return text


def metric_table() -> str:
    """Every metric of the registry: key, name, which way is better, whether it is a per-case
    0/1, its default threshold, the splits that report it, and what it measures."""
    body = [[f"`{key}`", metric.label, metric.arrow, "yes" if metric.binary else "no",
             f"`{key}{metric.default_threshold}`" if metric.default_threshold else DASH,
             ", ".join(name for name, split in SPLITS.items() if key in split.metrics), _escape(metric.description)]
            for key, metric in METRICS.items()]
    table: str = tabulate(body, headers=["key", "metric", "better", "0/1", "default threshold", "splits", "what it measures"],
                          tablefmt="pipe", disable_numparse=True)
    return table


def _benchmark_table(benchmark: Benchmark, rows: Sequence[TableRow], marks: Sequence[str], notes: Sequence[str],
                     bounds: Sequence[Intervals] | None, protocols: Sequence[str] | None = None) -> str:
    """The benchmark's table of means, the cases line and ``notes``, then, with ``bounds``, the
    interval table; ``marks[i]`` is appended to row ``i``'s method in both tables, then, when
    ``protocols`` differ, the row's protocol."""
    protocol_title, marks = _protocol_marks(protocols, marks)
    columns = table_columns(benchmark)
    header = ["Method", *(label for _, _, label in columns)]
    parts = [f"{benchmark.title} (mean over cases ×100{protocol_title})",
             _markdown(header, _grouped_body(rows, columns, marks, lambda _, value: _number(value))),
             _cases_line(rows, splits_of(benchmark)), *notes]
    if bounds is not None:
        if len(bounds) != len(rows):
            raise ValueError(f"{len(bounds)} interval sets for {len(rows)} rows")
        interval_rows = [(row.model, row.method, row_bounds) for row, row_bounds in zip(rows, bounds)]
        parts += [f"{_PERCENT} confidence intervals of Table {benchmark.table}",
                  _markdown(header, _grouped_body(interval_rows, columns, marks, lambda _, value: _interval(value))),
                  INTERVAL_METHOD]
    return "\n\n".join(parts)


def _protocol_marks(protocols: Sequence[str] | None, marks: Sequence[str]) -> tuple[str, list[str]]:
    """The title's protocol part ("; protocol: upstream") and the row marks, each row marked
    with its protocol when they differ."""
    if protocols is None:
        return "", list(marks)
    if len(protocols) != len(marks):
        raise ValueError(f"{len(protocols)} protocols for {len(marks)} rows")
    distinct = sorted(set(protocols))
    if len(distinct) == 1:
        return f"; protocol: {distinct[0]}", list(marks)
    return "; protocol: MIXED, rows are marked", [f"{mark} (protocol: {name})" for mark, name in zip(marks, protocols)]


def _grouped_body(rows: Sequence[tuple[str, str, Mapping[str, Mapping[str, Any]]]], columns: Sequence[Column],
                  marks: Sequence[str], cell: Callable[[str, Any], str]) -> list[list[str]]:
    """Rows (model, method, split -> metric -> value) grouped by model (in order of first
    appearance): a ``*model*`` line, then one line per method with ``marks[i]`` after row
    ``i``'s method; a column's cell is ``cell(metric, value)``, or "–" when the row has no such value."""
    by_model: dict[str, list[int]] = {}
    for index, (model, _, _) in enumerate(rows):
        by_model.setdefault(model, []).append(index)
    body: list[list[str]] = []
    for model, indices in by_model.items():
        body.append([f"*{_escape(model)}*"] + [""] * len(columns))
        for index in indices:
            _, method, result = rows[index]
            values = [(metric, result.get(split, {}).get(metric)) for split, metric, _ in columns]
            body.append([_escape(method) + marks[index], *(DASH if v is None else cell(metric, v) for metric, v in values)])
    return body


def _cases_line(rows: Sequence[TableRow], splits: Sequence[str]) -> str:
    """``n cases per split: ...``; one list when all rows agree, else one per row."""
    per_row = [(row.model, row.method, _split_counts(row.result, splits)) for row in rows]
    if len({counts for _, _, counts in per_row}) <= 1:
        listed = per_row[0][2] if per_row else DASH
    else:
        listed = "; ".join(f"{model} / {method}: {counts}" for model, method, counts in per_row)
    return f"n cases per split (errors excluded from the means): {listed}"


def _split_counts(result: Aggregate, splits: Sequence[str]) -> str:
    parts = []
    for split in splits:
        counts = result.get(split)
        if counts is None:
            parts.append(f"{split} {DASH}")
            continue
        errors = int(counts["error"])
        suffix = f" ({errors} error{'s' if errors != 1 else ''})" if errors else ""
        parts.append(f"{split} {int(counts['cases'])}{suffix}")
    return ", ".join(parts)


def _ran(result: Aggregate, benchmark: Benchmark) -> bool:
    return any(split in result for split in splits_of(benchmark))


def _group_table(split: str, label: str, groups: Mapping[str, Sequence[CaseRecord]]) -> str:
    """One row per group: its name, n and ``mean [low, high]`` per metric of the split."""
    metrics = SPLITS[split].metrics
    body = []
    for name, cases in groups.items():
        means = aggregate(cases).get(split, {})
        bounds = intervals(cases).get(split, {})
        body.append([_escape(name), str(len(cases)),
                     *(f"{_number(means[m])} {_interval(bounds[m])}" if m in bounds else DASH for m in metrics)])
    return _markdown([label, "n", *(METRICS[metric].label for metric in metrics)], body)


def _markdown(header: Sequence[str], body: Sequence[Sequence[str]]) -> str:
    """A pipe table of pre-formatted cells: the first column left-aligned, the others right-aligned."""
    table: str = tabulate(body, headers=header, tablefmt="pipe", disable_numparse=True,
                          colalign=("left", *["right"] * (len(header) - 1)))
    return table


def _escape(text: str) -> str:
    return text.replace("|", "\\|")


def _number(value: float) -> str:
    return f"{value:.2f}"


def _interval(bounds: Interval) -> str:
    """``[low, high]`` with one decimal: with 1000 resamples the ends carry a Monte Carlo error
    of about a tenth of a point, so a second decimal would be noise."""
    low, high = bounds
    return f"[{low:.1f}, {high:.1f}]"
