"""Table 1 / Table 2 and the machine-readable outputs of a run; merging several runs.

A report directory holds one run (one model × method):

- ``cases.jsonl``: one JSON object per case, appended as cases finish (:class:`CaseLog`) and
  rewritten sorted by ``case_id`` at the end of the run (:func:`write_report`);
- ``summary.json``: the run summary (model, method, hparams, data, distortion_scaling, seed,
  sample, thresholds, versions, timings, counts, intervals), sorted keys, indent 2;
- ``table1.md`` / ``table2.md``: the paper's Table 1 and Table 2 for the run, each followed by
  a table of the same columns with the 95% bootstrap interval of every cell;
- ``relations.md``: every metric per split broken down by relation and, for RoundEdit, by
  arity (``1-N``: the subject has N true objects), with intervals (:func:`relation_table`).

A case record has ``case_id``, ``split`` (coverage | reverse | composite | easy | hard),
``relation``, ``arity``, ``model``, ``method``, ``outcome`` (passed | failed | error),
``metrics`` (name -> number, empty on error), ``probabilities``, ``failures`` (threshold
failure messages, each starting with the metric's name, e.g. ``"CS_imp = 0: ..."``), ``error``,
``timings`` and ``nodeid``.

Table values are means over cases ×100, and intervals percentile bootstrap intervals of those
means (:func:`pytest_kedit.metrics.bootstrap_interval`), computed over records sorted by
``case_id``, so a table does not depend on the order in which cases finished (pytest-xdist).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, NamedTuple

from .cases import ROUND_SPLITS, SPLITS
from .errors import KeditError
from .metrics import BOOTSTRAP_CONFIDENCE, BOOTSTRAP_RESAMPLES, BOOTSTRAP_SEED, bootstrap_interval, mean_percent
from .thresholds import DISPLAY_NAMES as METRIC_LABELS

Record = Mapping[str, Any]
#: split -> {metric: mean ×100, plus the counts "cases", "passed", "failed", "error"}.
Aggregate = dict[str, dict[str, float]]
#: (low, high) of a cell's 95% bootstrap interval, ×100.
Interval = tuple[float, float]
#: split -> {metric: interval}, for the metrics of an :data:`Aggregate`.
Intervals = dict[str, dict[str, Interval]]
#: (model, method, aggregate): one row of Table 1 / Table 2.
Row = tuple[str, str, Mapping[str, Mapping[str, float]]]

CASES_FILE = "cases.jsonl"
SUMMARY_FILE = "summary.json"
TABLE1_FILE = "table1.md"
TABLE2_FILE = "table2.md"
RELATIONS_FILE = "relations.md"

OUTCOMES = ("passed", "failed", "error")
#: Keys of the per-split counts in an :data:`Aggregate`.
COUNT_KEYS = ("cases", *OUTCOMES)

#: The metrics each split produces, in table order.
SPLIT_METRICS: dict[str, tuple[str, ...]] = {
    "coverage": ("single_succ", "cs", "cm"),
    "reverse": ("cs_exp", "cs_imp", "cm"),
    "composite": ("cs_exp", "cs_imp", "cm", "tfd"),
    "easy": ("succ", "d", "ir", "fr"),
    "hard": ("succ", "d", "ir", "fr"),
}
#: (split, metric, header cell) of each numeric column, in the paper's order.
TABLE1_COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("coverage", "single_succ", "Single Succ"),
    *((split, metric, f"{split.capitalize()} {METRIC_LABELS[metric]}")
      for split in ("coverage", "reverse", "composite")
      for metric in SPLIT_METRICS[split] if metric != "single_succ"),
)
TABLE2_COLUMNS: tuple[tuple[str, str, str], ...] = tuple(
    (split, metric, f"{split.upper()} {METRIC_LABELS[metric]}")
    for split in ROUND_SPLITS
    for metric in SPLIT_METRICS[split]
)
SCALING_LABELS = {
    "paper": "paper JS (natural log)",
    "upstream": "upstream JS/|Obj| (the factor carried by the published Table 2)",
}
DASH = "–"

_TABLE1_TITLE = "Table 1: Knowledge Conflict (mean over cases ×100)"
_TABLE2_TITLE = "Table 2: Knowledge Distortion (mean over cases ×100)"
_PERCENT = f"{100 * BOOTSTRAP_CONFIDENCE:g}%"
INTERVAL_METHOD = (f"{_PERCENT} intervals: percentile bootstrap over the cases of each cell (errors excluded), "
                   f"{BOOTSTRAP_RESAMPLES} resamples with replacement, seed {BOOTSTRAP_SEED}; the middle {_PERCENT} "
                   "of the resampled means ×100.")
_METRIC_OF_LABEL = {label: metric for metric, label in METRIC_LABELS.items()}


class ReportError(KeditError):
    """A report directory or one of its files is missing or malformed.

    The message names the file and, for JSON Lines and JSON syntax errors, the line.
    """

    def __init__(self, path: str | os.PathLike[str], message: str, line: int | None = None):
        self.path = str(path)
        self.line = line
        where = self.path if line is None else f"{self.path}, line {line}"
        super().__init__(f"{where}: {message}")


# --------------------------------------------------------------------------- aggregation


def sorted_records(records: Iterable[Record]) -> list[Record]:
    """The records ordered by ``case_id`` (then ``nodeid``): the canonical order of a run."""
    return sorted(records, key=lambda record: (record["case_id"], record.get("nodeid") or ""))


def aggregate(records: Iterable[Record]) -> Aggregate:
    """Per split: each metric's mean ×100 and the case counts.

    Only splits with at least one record appear. For each split the result maps every metric
    that some non-error case has (value not ``None``) to ``mean_percent`` of its values taken in
    ``case_id`` order, plus ``cases`` (all records), ``passed``, ``failed`` and ``error`` (ints).
    Error cases count in ``cases`` and ``error`` only. The result is the same, bit for bit,
    whatever the order of ``records``.
    """
    ordered = sorted_records(records)
    counts: dict[str, dict[str, int]] = {}
    for record in ordered:
        split_counts = counts.setdefault(record["split"], dict.fromkeys(COUNT_KEYS, 0))
        split_counts["cases"] += 1
        split_counts[record["outcome"]] += 1
    values = _metric_values(ordered)
    return {split: {**{metric: mean_percent(v) for metric, v in values.get(split, {}).items()}, **counts[split]}
            for split in sorted(counts, key=_split_order)}


def intervals(records: Iterable[Record]) -> Intervals:
    """Per split: the bootstrap interval of every metric mean of :func:`aggregate`.

    ``bootstrap_interval`` (its defaults: 95%, 1000 resamples, seed 0) of the same values in the
    same (``case_id``) order, so the result does not depend on the order of ``records``. Splits
    whose cases are all errors are left out.
    """
    return {split: {metric: bootstrap_interval(values) for metric, values in per_metric.items()}
            for split, per_metric in _metric_values(sorted_records(records)).items()}


def interval_summary(bounds: Intervals) -> dict[str, Any]:
    """The ``intervals`` entry of ``summary.json``: the method (``"percentile bootstrap over
    cases"``, ``confidence``, ``resamples``, ``seed``) and ``"splits"``: ``bounds`` (from
    :func:`intervals`) with each interval as ``[low, high]``."""
    return {
        "method": "percentile bootstrap over cases",
        "confidence": BOOTSTRAP_CONFIDENCE,
        "resamples": BOOTSTRAP_RESAMPLES,
        "seed": BOOTSTRAP_SEED,
        "splits": {split: {metric: list(interval) for metric, interval in per_metric.items()}
                   for split, per_metric in bounds.items()},
    }


def _metric_values(ordered: Iterable[Record]) -> dict[str, dict[str, list[float]]]:
    """Split -> metric -> the values of the non-error records in the given order (``None``
    values left out); splits in table order, metrics sorted."""
    values: dict[str, dict[str, list[float]]] = {}
    for record in ordered:
        if record["outcome"] == "error":
            continue
        split_values = values.setdefault(record["split"], {})
        for metric, value in (record.get("metrics") or {}).items():
            if value is not None:
                split_values.setdefault(metric, []).append(float(value))
    return {split: {metric: values[split][metric] for metric in sorted(values[split])}
            for split in sorted(values, key=_split_order)}


def run_counts(records: Iterable[Record], thresholds: Collection[str] | None = None) -> dict[str, Any]:
    """The ``counts`` entry of ``summary.json``.

    ``{"cases", "passed", "failed", "error"}`` over the whole run, and ``"splits"``: per split the
    same four counts plus ``"thresholds"``: per metric of the split that is in ``thresholds``
    (the metric keys with a threshold, e.g. ``summary["thresholds"]``; ``None``: every metric),
    ``{"checked": n, "passed": k}`` where ``n`` counts the non-error cases that have the metric
    and ``k`` those among them whose ``failures`` do not name it.
    """
    splits: dict[str, dict[str, Any]] = {}
    for record in sorted_records(records):
        split = record["split"]
        entry = splits.setdefault(split, {**dict.fromkeys(COUNT_KEYS, 0), "thresholds": {}})
        entry["cases"] += 1
        entry[record["outcome"]] += 1
        if record["outcome"] == "error":
            continue
        metrics = record.get("metrics") or {}
        failed = {_failure_metric(message) for message in record.get("failures") or ()}
        for metric in SPLIT_METRICS[split]:
            if (thresholds is None or metric in thresholds) and metrics.get(metric) is not None:
                tally = entry["thresholds"].setdefault(metric, {"checked": 0, "passed": 0})
                tally["checked"] += 1
                tally["passed"] += metric not in failed
    totals = {key: sum(entry[key] for entry in splits.values()) for key in COUNT_KEYS}
    return {**totals, "splits": {split: splits[split] for split in sorted(splits, key=_split_order)}}


def _failure_metric(message: str) -> str:
    """The metric a threshold failure message names before its `` = ``: a display name such as
    ``CS_imp`` (see :mod:`pytest_kedit.thresholds`) or a metric key."""
    name = message.partition(" = ")[0].strip()
    return _METRIC_OF_LABEL.get(name, name.lower())


def _split_order(split: str) -> tuple[int, str]:
    return (SPLITS.index(split) if split in SPLITS else len(SPLITS), split)


# --------------------------------------------------------------------------- Markdown


def _escape(text: str) -> str:
    return text.replace("|", "\\|")


def _markdown_table(header: Sequence[str], body: Iterable[Sequence[str]]) -> str:
    """A pipe table; the first column is left-aligned, the others right-aligned."""
    lines = [
        "| " + " | ".join(header) + " |",
        "|" + "|".join([" :--- "] + [" ---: "] * (len(header) - 1)) + "|",
    ]
    lines += ["| " + " | ".join(cells) + " |" for cells in body]
    return "\n".join(lines)


def _number(value: float) -> str:
    return f"{value:.2f}"


def _interval(bounds: Interval) -> str:
    """``[low, high]`` with one decimal: with 1000 resamples the ends carry a Monte Carlo error
    of about a tenth of a point, so a second decimal would be noise."""
    low, high = bounds
    return f"[{low:.1f}, {high:.1f}]"


def _grouped_body(
    rows: Sequence[tuple[str, str, Mapping[str, Mapping[str, Any]]]],
    columns: Sequence[tuple[str, str, str]],
    marks: Sequence[str],
    cell: Callable[[Any], str] = _number,
) -> list[list[str]]:
    """Rows grouped by model (models in order of first appearance): a ``*model*`` line, then
    one line per method; ``marks[i]`` is appended to row ``i``'s method. A column's cell is
    ``cell(result[split][metric])``, or "–" when the row has no such value."""
    by_model: dict[str, list[int]] = {}
    for index, (model, _, _) in enumerate(rows):
        by_model.setdefault(model, []).append(index)
    body: list[list[str]] = []
    for model, indices in by_model.items():
        body.append([f"*{_escape(model)}*"] + [""] * len(columns))
        for index in indices:
            _, method, result = rows[index]
            values = [result.get(split, {}).get(metric) for split, metric, _ in columns]
            body.append([_escape(method) + marks[index]] + [DASH if v is None else cell(v) for v in values])
    return body


def _interval_section(title: str, rows: Sequence[Row], intervals: Sequence[Mapping[str, Mapping[str, Interval]]],
                      columns: Sequence[tuple[str, str, str]], marks: Sequence[str]) -> list[str]:
    """The interval table under a point table: the same rows and columns, then the method."""
    if len(intervals) != len(rows):
        raise ValueError(f"{len(intervals)} interval sets for {len(rows)} rows")
    interval_rows = [(model, method, bounds) for (model, method, _), bounds in zip(rows, intervals)]
    table = _markdown_table(["Method", *(label for _, _, label in columns)],
                            _grouped_body(interval_rows, columns, marks, _interval))
    return [f"{_PERCENT} confidence intervals of {title}", table, INTERVAL_METHOD]


def _split_counts(result: Mapping[str, Mapping[str, float]], splits: Sequence[str]) -> str:
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


def _cases_line(rows: Sequence[Row], splits: Sequence[str]) -> str:
    """``n cases per split: ...``; one list when all rows agree, else one per row."""
    per_row = [(model, method, _split_counts(result, splits)) for model, method, result in rows]
    if len({counts for _, _, counts in per_row}) <= 1:
        listed = per_row[0][2] if per_row else DASH
    else:
        listed = "; ".join(f"{model} / {method}: {counts}" for model, method, counts in per_row)
    return f"n cases per split (errors excluded from the means): {listed}"


def table1(rows: Sequence[Row], intervals: Sequence[Mapping[str, Mapping[str, Interval]]] | None = None) -> str:
    """Table 1 (Knowledge Conflict) as Markdown, laid out like the paper.

    Columns: Method | Single Succ | Coverage CS, CM | Reverse CS_exp, CS_imp, CM |
    Composite CS_exp, CS_imp, CM, TFD. Rows are grouped by model (a ``*model*`` line, then one
    line per method, in order of first appearance). Values have 2 decimals; a split that was not
    run shows "–". A line under the table gives the number of cases per split.

    With ``intervals`` (one :data:`Intervals` per row), a second table follows with the same
    rows and columns and cells ``[low, high]`` (1 decimal), then a line naming the method.
    """
    marks = [""] * len(rows)
    table = _markdown_table(["Method", *(label for _, _, label in TABLE1_COLUMNS)],
                            _grouped_body(rows, TABLE1_COLUMNS, marks))
    parts = [_TABLE1_TITLE, table, _cases_line(rows, ("coverage", "reverse", "composite"))]
    if intervals is not None:
        parts += _interval_section("Table 1", rows, intervals, TABLE1_COLUMNS, marks)
    return "\n\n".join(parts)


def table2(rows: Sequence[Row], scaling: str | Sequence[str],
           intervals: Sequence[Mapping[str, Mapping[str, Interval]]] | None = None) -> str:
    """Table 2 (Knowledge Distortion) as Markdown, laid out like the paper.

    Columns: Method | EASY Succ, D, IR, FR | HARD Succ, D, IR, FR; rows grouped by model as in
    :func:`table1`. ``scaling`` is the D scaling (``"paper"`` or ``"upstream"``) of every row,
    or a sequence with one per row. Under the table: the cases per split and the D scaling.
    When rows that ran EASY or HARD differ in scaling, those rows are marked ``(D: paper)`` /
    ``(D: upstream)`` and the D line says that their D values are not comparable.
    ``intervals`` adds the interval table as in :func:`table1` (marked rows alike).
    """
    scalings = [scaling] * len(rows) if isinstance(scaling, str) else list(scaling)
    if len(scalings) != len(rows):
        raise ValueError(f"table2: {len(scalings)} scalings for {len(rows)} rows")
    for name in scalings:
        if name not in SCALING_LABELS:
            raise ValueError(f"table2: unknown D scaling {name!r} (expected 'paper' or 'upstream')")
    relevant = [i for i, (_, _, result) in enumerate(rows) if any(s in result for s in ROUND_SPLITS)]
    distinct = sorted({scalings[i] for i in relevant or range(len(rows))})
    marks = [""] * len(rows)
    if len(distinct) > 1:
        for index in relevant:
            marks[index] = f" (D: {scalings[index]})"
        d_line = ("D scaling: MIXED, rows are marked (paper = JS, upstream = JS/|Obj|); "
                  "D values of different scalings are not comparable.")
    else:
        d_line = f"D scaling: {SCALING_LABELS[distinct[0]] if distinct else DASH}."
    table = _markdown_table(["Method", *(label for _, _, label in TABLE2_COLUMNS)],
                            _grouped_body(rows, TABLE2_COLUMNS, marks))
    parts = [_TABLE2_TITLE, table, _cases_line(rows, ROUND_SPLITS), d_line]
    if intervals is not None:
        parts += _interval_section("Table 2", rows, intervals, TABLE2_COLUMNS, marks)
    return "\n\n".join(parts)


def run_tables(summary: Mapping[str, Any], records: Iterable[Record]) -> tuple[str, str]:
    """Table 1 and Table 2 of one run, with intervals: a single row (summary's model, method)."""
    ordered = sorted_records(records)
    return _run_tables(summary, ordered, intervals(ordered))


def _run_tables(summary: Mapping[str, Any], ordered: Sequence[Record], bounds: Intervals) -> tuple[str, str]:
    row: Row = (summary["model"], summary["method"], aggregate(ordered))
    return table1([row], [bounds]), table2([row], summary["distortion_scaling"], [bounds])


def threshold_summary(records: Iterable[Record], thresholds: Collection[str] | None = None) -> str:
    """Per split (and in total): cases, passed, failed, error, and per metric in ``thresholds``
    (``None``: every metric) how many of the non-error cases having it passed its threshold, as
    ``passed/checked`` (see :func:`run_counts`)."""
    counts = run_counts(records, thresholds)
    body = []
    for split, entry in counts["splits"].items():
        tallies = entry["thresholds"]
        passed = ", ".join(f"{METRIC_LABELS[m]} {tallies[m]['passed']}/{tallies[m]['checked']}"
                           for m in SPLIT_METRICS[split] if m in tallies)
        body.append([split, *(str(entry[key]) for key in COUNT_KEYS), passed or DASH])
    body.append(["all", *(str(counts[key]) for key in COUNT_KEYS), ""])
    return _markdown_table(["Split", "Cases", "Passed", "Failed", "Error", "Threshold passed/checked"], body)


_PHASES = (("model_load", "model load"), ("edit", "edits"), ("probe", "probes"), ("restore", "restore"))


def timing_summary(summary: Mapping[str, Any]) -> str:
    """Where the time went: model load, edits, probes, restore, other and total.

    Seconds, share of the total and seconds per case (``summary["counts"]["cases"]``; "–"
    without cases). "other" is the wall-clock total minus the phases. When the phases add up to
    more than the wall-clock total (parallel workers), shares are of the phases' sum and a line
    says so.
    """
    timings = summary.get("timings") or {}
    seconds = {label: float(timings.get(key, 0.0)) for key, label in _PHASES}
    phases = sum(seconds.values())
    total = float(timings.get("total", phases))
    seconds["other"] = max(total - phases, 0.0)
    whole = max(total, phases)
    cases = int((summary.get("counts") or {}).get("cases", 0))

    def line(label: str, value: float, share: str) -> list[str]:
        return [label, _number(value), share, _number(value / cases) if cases else DASH]

    body = [line(label, value, f"{100 * value / whole:.1f}%" if whole else DASH)
            for label, value in seconds.items()]
    body.append(line("total", total, "100.0%" if whole == total and total else DASH))
    text = _markdown_table(["Phase", "Seconds", "% of total", "s/case"], body)
    if phases > total:
        text += "\n\nThe phases add up to more than the wall-clock total (parallel workers); % are of their sum."
    return text


def relation_table(records: Iterable[Record], scaling: str | None = None) -> str:
    """Every metric of every split broken down by relation and, for RoundEdit, by arity.

    For each split with non-error cases (table order): a table with one row per relation (the
    records' ``relation``: e1's relation, or the case's rule where the data gives one, e.g.
    ``P22>P40``), and for easy and hard a second one per arity (``1-N``: the subject has N true
    objects; the records' ``arity`` up to any ``@``). Columns: n, the group's non-error cases,
    and per metric of the split ``mean [low, high]``: ``mean_percent`` (2 decimals) and
    ``bootstrap_interval`` (1 decimal, its defaults) of the group's values in ``case_id`` order;
    "–" when no case of the group has the metric. Rows in natural order (P17 before P131, 1-2
    before 1-10). Then the interval method and, when ``scaling`` is given and a RoundEdit split
    is shown, the D scaling. "no cases" when every record is an error.
    """
    ordered = [record for record in sorted_records(records) if record["outcome"] != "error"]
    splits = sorted({record["split"] for record in ordered}, key=_split_order)
    if not splits:
        return "no cases"
    parts = [f"Per relation: mean over cases ×100 [{_PERCENT} interval], errors excluded"]
    for split in splits:
        cases = [record for record in ordered if record["split"] == split]
        parts += [f"{split} by relation", _group_table(split, "Relation", cases, _relation_of)]
        if split in ROUND_SPLITS:
            parts += [f"{split} by arity (1-N: N true objects)", _group_table(split, "Arity", cases, _arity_of)]
    parts.append(INTERVAL_METHOD)
    if scaling is not None and set(splits) & set(ROUND_SPLITS):
        parts.append(f"D scaling: {SCALING_LABELS[scaling]}.")
    return "\n\n".join(parts)


def _relation_of(record: Record) -> str:
    return str(record.get("relation") or DASH)


def _arity_of(record: Record) -> str:
    """``1-N`` of a RoundEdit record: its ``arity`` (the upstream ``type``, e.g. ``1-3@P136``) up
    to any ``@``."""
    return str(record.get("arity") or DASH).partition("@")[0]


def _group_table(split: str, label: str, cases: Sequence[Record], key: Callable[[Record], str]) -> str:
    """One row per value of ``key`` over ``cases``: n and ``mean [low, high]`` per metric of the split."""
    groups: dict[str, list[Record]] = {}
    for case in cases:
        groups.setdefault(key(case), []).append(case)
    metrics = SPLIT_METRICS[split]
    body = []
    for name in sorted(groups, key=_natural):
        values = [[float(case["metrics"][metric]) for case in groups[name]
                   if (case.get("metrics") or {}).get(metric) is not None] for metric in metrics]
        body.append([_escape(name), str(len(groups[name])), *(_mean_and_interval(v) for v in values)])
    return _markdown_table([label, "n", *(METRIC_LABELS[metric] for metric in metrics)], body)


def _natural(text: str) -> tuple[Any, ...]:
    """Sort key comparing runs of digits as numbers: ``P17 < P131``, ``1-2 < 1-10``."""
    return tuple(int(part) if index % 2 else part for index, part in enumerate(re.split(r"(\d+)", text)))


def _mean_and_interval(values: Sequence[float]) -> str:
    if not values:
        return DASH
    return f"{_number(mean_percent(values))} {_interval(bootstrap_interval(values))}"


# --------------------------------------------------------------------------- files


class CaseLog:
    """``DIR/cases.jsonl`` of a new run: one JSON line per finished case, flushed at once, so an
    interrupted run keeps every case it finished. A previous run's cases and summary in ``DIR``
    are removed first, so the folder never mixes two runs. Close it before :func:`write_report`."""

    def __init__(self, directory: str | os.PathLike[str]):
        self.path = Path(directory) / CASES_FILE
        self.path.parent.mkdir(parents=True, exist_ok=True)
        (self.path.parent / SUMMARY_FILE).unlink(missing_ok=True)
        self._file = self.path.open("w", encoding="utf-8")

    def append(self, record: Record) -> None:
        """Write ``record`` as one JSON line (sorted keys) and flush it."""
        self._file.write(json.dumps(record, sort_keys=True) + "\n")
        self._file.flush()

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> CaseLog:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.close()


def _write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically (a temporary file, then a rename)."""
    temporary = path.with_name(path.name + ".tmp")
    try:
        temporary.write_text(text, encoding="utf-8")
        os.replace(temporary, path)
    except OSError as exc:
        raise ReportError(path, f"cannot write: {exc.strerror or exc}") from None


def write_tables(directory: str | os.PathLike[str], table1_md: str, table2_md: str,
                 relations_md: str | None = None) -> None:
    """Write ``table1.md``, ``table2.md`` and, when given, ``relations.md`` into ``directory``
    (created if needed)."""
    target = Path(directory)
    try:
        target.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ReportError(target, f"cannot create directory: {exc.strerror or exc}") from None
    _write_text(target / TABLE1_FILE, table1_md + "\n")
    _write_text(target / TABLE2_FILE, table2_md + "\n")
    if relations_md is not None:
        _write_text(target / RELATIONS_FILE, relations_md + "\n")


class RunReport(NamedTuple):
    """The outputs of one finished run."""

    #: the run summary with ``counts`` (:func:`run_counts` for the metrics of its
    #: ``thresholds``) and ``intervals`` (:func:`interval_summary`)
    summary: dict[str, Any]
    #: the records in ``case_id`` order
    records: list[Record]
    #: Table 1 and Table 2, each with its interval table (:func:`run_tables`)
    table1: str
    table2: str
    #: the per-relation and per-arity breakdown (:func:`relation_table`)
    relations: str


def run_report(summary: Mapping[str, Any], records: Iterable[Record]) -> RunReport:
    """Everything a run reports, computed once from its summary and case records."""
    ordered = sorted_records(records)
    bounds = intervals(ordered)
    written = {**summary, "counts": run_counts(ordered, summary.get("thresholds") or {}),
               "intervals": interval_summary(bounds)}
    return RunReport(written, ordered, *_run_tables(written, ordered, bounds),
                     relation_table(ordered, summary["distortion_scaling"]))


def write_report(
    directory: str | os.PathLike[str], summary: Mapping[str, Any], records: Iterable[Record]
) -> RunReport:
    """Write the report of a finished run (:func:`run_report`) into ``directory`` and return it.

    Writes ``table1.md``, ``table2.md``, ``relations.md``, ``summary.json`` (sorted keys,
    indent 2) and rewrites ``cases.jsonl`` sorted by ``case_id``. Each file is replaced
    atomically.
    """
    run = run_report(summary, records)
    write_tables(directory, run.table1, run.table2, run.relations)
    target = Path(directory)
    _write_text(target / CASES_FILE, "".join(json.dumps(r, sort_keys=True) + "\n" for r in run.records))
    _write_text(target / SUMMARY_FILE, json.dumps(run.summary, sort_keys=True, indent=2) + "\n")
    return run


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ReportError(path, "missing (not a finished kedit report directory?)") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ReportError(path, f"cannot read: {exc}") from None


def _load_summary(path: Path) -> dict[str, Any]:
    try:
        summary = json.loads(_read_text(path))
    except json.JSONDecodeError as exc:
        raise ReportError(path, f"not valid JSON: {exc.msg}", line=exc.lineno) from None
    if not isinstance(summary, dict):
        raise ReportError(path, "must be a JSON object")
    for field in ("model", "method"):
        if not isinstance(summary.get(field), str) or not summary[field]:
            raise ReportError(path, f"field '{field}' must be a non-empty string")
    if summary.get("distortion_scaling") not in SCALING_LABELS:
        raise ReportError(path, "field 'distortion_scaling' must be 'paper' or 'upstream', "
                                f"got {summary.get('distortion_scaling')!r}")
    return summary


def _record_problem(record: Any) -> str | None:
    """What is wrong with a parsed ``cases.jsonl`` line, or ``None``."""
    if not isinstance(record, dict):
        return "a case record must be a JSON object"
    if not isinstance(record.get("case_id"), str):
        return "field 'case_id' must be a string"
    for field in ("relation", "arity"):  # null for a record that could not be parsed
        if record.get(field) is not None and not isinstance(record[field], str):
            return f"field '{field}' must be a string or null"
    if record.get("split") not in SPLITS:
        return f"field 'split' must be one of {', '.join(SPLITS)}, got {record.get('split')!r}"
    if record.get("outcome") not in OUTCOMES:
        return f"field 'outcome' must be one of {', '.join(OUTCOMES)}, got {record.get('outcome')!r}"
    metrics = record.get("metrics")
    if metrics is not None and not isinstance(metrics, dict):
        return "field 'metrics' must be an object"
    for name, value in (metrics or {}).items():
        if value is not None and not isinstance(value, (int, float)):
            return f"field 'metrics.{name}' must be a number or null"
    failures = record.get("failures")
    if failures is not None and not (isinstance(failures, list) and all(isinstance(m, str) for m in failures)):
        return "field 'failures' must be a list of strings"
    return None


def _load_cases(path: Path) -> list[dict[str, Any]]:
    records = []
    for number, line in enumerate(_read_text(path).splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ReportError(path, f"not valid JSON: {exc.msg}", line=number) from None
        problem = _record_problem(record)
        if problem is not None:
            raise ReportError(path, problem, line=number)
        records.append(record)
    return records


def load_run(directory: str | os.PathLike[str]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Read a report directory back: ``(summary, records)``, records in file order.

    Raises :class:`ReportError` naming the directory when it does not exist, and naming the
    file (and line) when ``summary.json`` or ``cases.jsonl`` is missing or malformed.
    """
    target = Path(directory)
    if not target.is_dir():
        raise ReportError(target, "no such report directory")
    return _load_summary(target / SUMMARY_FILE), _load_cases(target / CASES_FILE)


class Runs(NamedTuple):
    """Report directories read back, one row's records per model × method (:func:`load_runs`)."""

    #: (model, method) -> (summary of the latest run, records), in order of first appearance
    by_key: dict[tuple[str, str], tuple[dict[str, Any], list[dict[str, Any]]]]
    #: (model, method) -> every directory that held it, in the order given
    sources: dict[tuple[str, str], list[str]]

    def notes(self) -> str:
        """One paragraph per model × method found in several directories."""
        return "".join(
            f"\n\nNote: {model} / {method} is in several runs ({', '.join(paths)}); "
            f"each split comes from the last of them that ran it."
            for (model, method), paths in self.sources.items() if len(paths) > 1
        )


def load_runs(directories: Sequence[str | os.PathLike[str]]) -> Runs:
    """Read several report directories (:func:`load_run`). Runs of the same model × method are
    combined split by split: a split's cases come from the last directory that ran that split,
    so the ConflictEdit splits of one run and the RoundEdit splits of another make one row.
    Raises KeditError when ``directories`` is empty."""
    if not directories:
        raise KeditError("no report directories given")
    runs = Runs({}, {})
    for directory in directories:
        summary, records = load_run(directory)
        key = (summary["model"], summary["method"])
        if key in runs.by_key:
            replaced = {record["split"] for record in records}
            records = [r for r in runs.by_key[key][1] if r["split"] not in replaced] + records
        runs.by_key[key] = (summary, records)
        runs.sources.setdefault(key, []).append(str(directory))
    return runs


def merge_tables(runs: Runs) -> tuple[str, str]:
    """Table 1 and Table 2, each with its interval table, one row per model × method of ``runs``.

    Rows are grouped by model, in order of first appearance. When several directories held the
    same model × method, a note under each table says which one the row shows. Differing D
    scalings are marked in Table 2 (see :func:`table2`).
    """
    rows: list[Row] = []
    bounds: list[Intervals] = []
    for (model, method), (_, records) in runs.by_key.items():
        ordered = sorted_records(records)
        rows.append((model, method, aggregate(ordered)))
        bounds.append(intervals(ordered))
    scalings = [summary["distortion_scaling"] for summary, _ in runs.by_key.values()]
    return table1(rows, bounds) + runs.notes(), table2(rows, scalings, bounds) + runs.notes()


def merge_relations(runs: Runs) -> str:
    """The per-relation breakdown (:func:`relation_table`) of each model × method of ``runs``,
    each under a ``## model / method`` heading, then the notes of :func:`merge_tables`."""
    return "\n\n".join(
        f"## {model} / {method}\n\n{relation_table(records, summary['distortion_scaling'])}"
        for (model, method), (summary, records) in runs.by_key.items()
    ) + runs.notes()
