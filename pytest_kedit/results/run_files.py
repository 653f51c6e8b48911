"""The report folder of a run: writing it as cases finish and at the end, reading it back,
merging several.

A report folder holds one run (one model × method):

- ``cases.jsonl``: one :class:`~pytest_kedit.results.record.CaseRecord` per line, appended as cases
  finish (:class:`CaseLog`) and rewritten sorted by ``case_id`` at the end (:func:`write_report`);
- ``run.json``: ``{"provenance": ..., "cases_expected": N}``, what the cases depend on and how
  many cases the run has, written with the first case (:mod:`pytest_kedit.run.resume` reads it to
  continue an interrupted run; :func:`load_run` reads a run killed before its summary from it);
- ``summary.json``: the run summary (:class:`~pytest_kedit.results.summary.RunSummary`) with
  ``counts`` and ``intervals``;
- ``table1.md`` / ``table2.md``: the paper's Table 1 and Table 2 for the run, each followed by
  its interval table;
- ``table3.md``: Table 3 (sequential editing), only when the run has a stream case;
- ``relations.md``: every metric per split by relation and, for RoundEdit, by arity.

Every file but the case log is replaced atomically.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, BinaryIO, NamedTuple

from pytest_kedit.benchmark.registry import SEQUENTIAL, SPLITS, splits_of
from pytest_kedit.errors import KeditError
from pytest_kedit.results.aggregation import Intervals, aggregate, interval_summary, intervals, run_counts, sorted_records
from pytest_kedit.results.record import CaseRecord, RecordError, outcome_counts
from pytest_kedit.results.shard_merge import is_shard, merge_shards
from pytest_kedit.results.summary import RunSummary
from pytest_kedit.results.tables import TableRow, paper_tables, relation_table, table3
from pytest_kedit.storage.atomic import atomic_write_text
from pytest_kedit.storage.jsonl import JsonLinesError, drop_torn_line, read_json_lines

CASES_FILE = "cases.jsonl"
SUMMARY_FILE = "summary.json"
RUN_FILE = "run.json"
TABLE1_FILE = "table1.md"
TABLE2_FILE = "table2.md"
TABLE3_FILE = "table3.md"
RELATIONS_FILE = "relations.md"

#: What a file of a report folder that should be there and is not says.
_MISSING = "missing (not a finished kedit report directory?)"

#: (model, method): what makes a row of the tables.
RunKey = tuple[str, str]


class ReportError(KeditError):
    """A report folder or one of its files is missing or malformed.

    The message names the file and, for ``cases.jsonl`` and JSON syntax errors, the line.
    """

    def __init__(self, path: str | os.PathLike[str], message: str, line: int | None = None):
        self.path = str(path)
        self.line = line
        where = self.path if line is None else f"{self.path}, line {line}"
        super().__init__(f"{where}: {message}")


class CaseLog:
    """``DIR/cases.jsonl`` of a new run: one line per finished case, written through at once, so
    an interrupted run keeps every case it finished.

    Nothing in ``DIR`` is touched until the first case is appended: a run that never finishes
    a case (``--collect-only``, a usage error, a crash while loading the model) leaves a
    previous report whole. The first case replaces the previous run's files (cases, run,
    summary, tables), so the folder never mixes two runs; with ``resume``, it keeps the cases
    and ``run.json`` and appends (a torn last line, :mod:`pytest_kedit.storage.jsonl`, is dropped). Close it
    before :func:`write_report`."""

    def __init__(self, directory: str | os.PathLike[str], resume: bool = False):
        self.path = Path(directory) / CASES_FILE
        self.resume = resume
        self._file: BinaryIO | None = None
        self._provenance_written = False

    def append(self, record: CaseRecord, provenance: Mapping[str, Any] | None = None,
               cases_expected: int | None = None) -> None:
        """Write ``record`` as one line; the first ``provenance`` given goes to ``run.json``, with
        ``cases_expected`` when known (kept when resuming a folder that has one).
        :class:`ReportError` naming the file when it cannot be written (a full disk): the lines
        written before are kept whole."""
        if self._file is None:
            self._file = self._start()
        line = (record.to_json() + "\n").encode("utf-8")
        start = self._file.tell()
        try:
            written = 0
            while written < len(line):
                written += self._file.write(line[written:]) or 0
        except OSError as exc:
            with contextlib.suppress(OSError):  # no half line left behind
                os.ftruncate(self._file.fileno(), start)
            raise ReportError(self.path, f"cannot write: {exc.strerror or exc}") from None
        if provenance is not None and not self._provenance_written:
            run_file = self.path.parent / RUN_FILE
            if not (self.resume and run_file.is_file()):
                facts = {"provenance": provenance, **({} if cases_expected is None else {"cases_expected": cases_expected})}
                _write_text(run_file, json.dumps(facts, sort_keys=True, indent=2) + "\n")
            self._provenance_written = True

    def _start(self) -> BinaryIO:
        folder = self.path.parent
        try:
            folder.mkdir(parents=True, exist_ok=True)
            for name in (SUMMARY_FILE, TABLE1_FILE, TABLE2_FILE, TABLE3_FILE, RELATIONS_FILE,
                         *(() if self.resume else (RUN_FILE,))):
                (folder / name).unlink(missing_ok=True)
            if not self.resume:
                return self.path.open("wb", buffering=0)
            if self.path.is_file():
                drop_torn_line(self.path)
            return self.path.open("ab", buffering=0)
        except OSError as exc:
            raise ReportError(folder, f"cannot write the report: {exc.strerror or exc}") from None

    def close(self) -> None:
        if self._file is not None:
            self._file.close()

    def __enter__(self) -> CaseLog:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.close()


class RunReport(NamedTuple):
    """The outputs of one finished run."""

    #: the run summary with ``counts`` (:func:`~pytest_kedit.results.aggregation.run_counts` for its
    #: ``thresholds``) and ``intervals`` (:func:`~pytest_kedit.results.aggregation.interval_summary`)
    summary: RunSummary
    #: the records in ``case_id`` order
    records: list[CaseRecord]
    #: Table 1 and Table 2, each with its interval table
    table1: str
    table2: str
    #: the per-relation and per-arity breakdown
    relations: str
    #: Table 3 (streams); written to the report folder only when the run has a stream case (:func:`has_streams`)
    table3: str


def run_report(summary: RunSummary, records: Iterable[CaseRecord]) -> RunReport:
    """Everything a run reports, computed once from its summary and case records; the summary's
    ``thresholds`` decide which metrics the counts check."""
    ordered = sorted_records(records)
    bounds = intervals(ordered)
    written = dataclasses.replace(summary, counts=run_counts(ordered, summary.thresholds),
                                  intervals=interval_summary(bounds))
    scaling = summary.distortion_scaling
    row = TableRow(summary.model, row_label(summary), aggregate(ordered))
    table1_md, table2_md = paper_tables([row], [scaling], [bounds], [summary.protocol])
    table3_md = table3([row], [summary.protocol])
    if not summary.complete:
        note = f"\n\n{partial_note(summary)}"
        table1_md, table2_md, table3_md = table1_md + note, table2_md + note, table3_md + note
    return RunReport(written, ordered, table1_md, table2_md, relation_table(ordered, scaling), table3_md)


def partial_note(summary: RunSummary) -> str:
    """What a run that is not complete lacks: the shards missing from a merge of shards, else
    the cases it did not finish."""
    if summary.shards_missing:
        return (f"partial: shard {', '.join(map(str, summary.shards_missing))} missing "
                f"(merged {', '.join(map(str, summary.shards or ()))})")
    return f"partial: {summary.cases_done} of {summary.cases_expected} cases (the run did not finish)"


def write_report(directory: str | os.PathLike[str], summary: RunSummary,
                 records: Iterable[CaseRecord]) -> RunReport:
    """Write the report of a finished run (:func:`run_report`) into ``directory`` and return it:
    the tables, ``summary.json``, and ``cases.jsonl`` rewritten sorted by ``case_id``."""
    run = run_report(summary, records)
    write_tables(directory, run.table1, run.table2, run.relations, run.table3 if has_streams(run.records) else None)
    write_run_data(directory, run)
    return run


def has_streams(records: Iterable[CaseRecord]) -> bool:
    """Whether some record is of a split of Table 3 (a stream), errors included: what makes a run
    report Table 3."""
    return any(record.split in splits_of(SEQUENTIAL) for record in records)


def write_run_data(directory: str | os.PathLike[str], run: RunReport) -> None:
    """Write ``cases.jsonl`` (the records in ``case_id`` order) and ``summary.json`` of ``run``
    into ``directory`` (created if needed): with the tables, a report folder others can read."""
    target = Path(directory)
    _write_text(target / CASES_FILE, "".join(record.to_json() + "\n" for record in run.records))
    _write_text(target / SUMMARY_FILE, run.summary.to_json())


def write_tables(directory: str | os.PathLike[str], table1_md: str, table2_md: str,
                 relations_md: str | None = None, table3_md: str | None = None) -> None:
    """Write ``table1.md``, ``table2.md`` and, when given, ``relations.md`` into ``directory``
    (created if needed); ``table3.md`` when ``table3_md`` is given, else an earlier one is removed
    (a folder never shows the streams of another run)."""
    target = Path(directory)
    _write_text(target / TABLE1_FILE, table1_md + "\n")
    _write_text(target / TABLE2_FILE, table2_md + "\n")
    if relations_md is not None:
        _write_text(target / RELATIONS_FILE, relations_md + "\n")
    if table3_md is not None:
        _write_text(target / TABLE3_FILE, table3_md + "\n")
    else:
        try:
            (target / TABLE3_FILE).unlink(missing_ok=True)
        except OSError as exc:
            raise ReportError(target / TABLE3_FILE, f"cannot remove: {exc.strerror or exc}") from None


def load_run(directory: str | os.PathLike[str]) -> tuple[RunSummary, list[CaseRecord]]:
    """Read a report folder back: ``(summary, records)``, the summary validated by
    :meth:`RunSummary.from_json <pytest_kedit.results.summary.RunSummary.from_json>`, the records
    as :func:`read_cases` reads them.

    A run killed before it wrote ``summary.json`` is read from ``cases.jsonl`` and ``run.json``
    (:func:`unfinished_summary`).

    Raises :class:`ReportError` naming the folder when it does not exist, and a KeditError naming
    the file (and line) when ``summary.json`` (or ``run.json``) or ``cases.jsonl`` is missing or
    malformed.
    """
    target = Path(directory)
    if not target.is_dir():
        raise ReportError(target, "a file, not a report directory" if target.exists() else "no such report directory")
    summary_file, run_file = target / SUMMARY_FILE, target / RUN_FILE
    records = read_cases(target / CASES_FILE)
    if summary_file.exists() or not run_file.exists():
        return RunSummary.from_json(_read_text(summary_file), summary_file), records
    return unfinished_summary(run_file, records), records


def unfinished_summary(run_file: Path, records: Sequence[CaseRecord]) -> RunSummary:
    """The summary of a run that has cases and ``run_file`` but no ``summary.json``: what its
    provenance says, not complete; what only a summary records (device, timings, the
    statistics) is unknown, and so are the cases expected when ``run.json`` does not say."""
    try:
        facts = json.loads(_read_text(run_file))
    except json.JSONDecodeError as exc:
        raise ReportError(run_file, f"not valid JSON: {exc.msg}", line=exc.lineno) from None
    recorded = facts.get("provenance") if isinstance(facts, dict) else None
    if not isinstance(recorded, dict):
        raise ReportError(run_file, "field 'provenance' must be an object")
    version = recorded.get("package_version")
    summary = {
        **{name: recorded.get(name) for name in ("model", "method", "model_fingerprint", "editor_fingerprint", "probe_version",
                                                  "seed", "distortion_scaling", "protocol", "sequential")},
        "thresholds": recorded.get("thresholds") or [], "hparams": recorded.get("hparams") or {},
        "data": {"source": None, "fingerprint": recorded.get("data_fingerprint"),
                 "files": recorded.get("data_files") or {}},
        "versions": {"pytest_kedit": version} if isinstance(version, str) else {},
        "splits": [split for split in SPLITS if any(record.split == split for record in records)],
        "hparams_file": None, "device": "unknown", "dtype": "unknown", "limit": None, "sample": None, "shard": None,
        "model_source": None, "statistics": {}, "timings": {}, "outcomes": outcome_counts(records),
        "complete": False, "cases_done": len(records), "cases_expected": facts.get("cases_expected", len(records)),
        "counts": None, "intervals": None,
    }
    return RunSummary.from_json(summary, run_file)


class Runs(NamedTuple):
    """Report folders read back, one row's records per model × method (:func:`load_runs`)."""

    #: (model, method) -> (summary of the latest run, records), in order of first appearance
    by_key: dict[RunKey, tuple[RunSummary, list[CaseRecord]]]
    #: (model, method) -> every folder that held it, in the order given
    sources: dict[RunKey, list[str]]

    def notes(self) -> str:
        """One paragraph per model × method found in several folders that are not shards, one
        per merge of shards that lacks a shard, and one per run that did not finish."""
        notes = []
        for (model, method), paths in self.sources.items():
            summary = self.by_key[(model, method)][0]
            if summary.shards is not None:
                if summary.shards_missing:
                    notes.append(f"\n\nNote: {model} / {method}: {partial_note(summary)}.")
                continue
            if len(paths) > 1:
                notes.append(f"\n\nNote: {model} / {method} is in several runs ({', '.join(paths)}); "
                             f"each split comes from the last of them that ran it.")
            if not summary.complete:
                notes.append(f"\n\nNote: {model} / {method}: {partial_note(summary)}.")
        return "".join(notes)


def row_label(summary: RunSummary) -> str:
    """A run's method as the tables name its row: the method, then the stream options it set
    (the provenance's ``sequential`` field: ``rome (carry 50)``, ``memit (edits 20, scheme final)``),
    so that runs that measured differently are rows of their own, never merged."""
    given = summary.sequential or {}
    return f"{summary.method} ({', '.join(f'{key} {value}' for key, value in given.items())})" if given else summary.method


def load_runs(directories: Sequence[str | os.PathLike[str]]) -> Runs:
    """Read several report folders (:func:`load_run`). Runs of the same model × method (and
    stream options: :func:`row_label`) are combined: shards (``--kedit-shard``) into one run (:func:`~pytest_kedit.results.shard_merge.merge_shards`,
    which refuses shards of different runs or overlapping shards), other runs split by split: a
    split's cases come from the last folder that ran that split, so the ConflictEdit splits of
    one run and the RoundEdit splits of another make one row. Raises KeditError when
    ``directories`` is empty."""
    if not directories:
        raise KeditError("no report directories given")
    groups: dict[RunKey, list[tuple[str, RunSummary, list[CaseRecord]]]] = {}
    for directory in directories:
        summary, records = load_run(directory)
        groups.setdefault((summary.model, row_label(summary)), []).append((str(directory), summary, records))
    runs = Runs({}, {})
    for key, group in groups.items():
        runs.sources[key] = [folder for folder, _, _ in group]
        if any(is_shard(summary) for _, summary, _ in group):
            runs.by_key[key] = merge_shards(group)
            continue
        for _, summary, records in group:
            if key in runs.by_key:
                replaced = {record.split for record in records}
                records = [record for record in runs.by_key[key][1] if record.split not in replaced] + records
            runs.by_key[key] = (summary, records)
    return runs


def merge_tables(runs: Runs) -> tuple[str, str]:
    """Table 1 and Table 2, each with its interval table, one row per model × method of ``runs``
    (grouped by model, in order of first appearance), each row with its run's D scaling. When
    several folders held the same model × method, a note under each table says which one each
    split comes from."""
    rows: list[TableRow] = []
    bounds: list[Intervals] = []
    for (model, method), (_, records) in runs.by_key.items():
        rows.append(TableRow(model, method, aggregate(records)))
        bounds.append(intervals(records))
    scalings = [summary.distortion_scaling for summary, _ in runs.by_key.values()]
    protocols = [summary.protocol for summary, _ in runs.by_key.values()]
    table1_md, table2_md = paper_tables(rows, scalings, bounds, protocols)
    return table1_md + runs.notes(), table2_md + runs.notes()


def merge_table3(runs: Runs) -> str | None:
    """Table 3, one row per model × method of ``runs`` as in :func:`merge_tables` (a run without
    streams shows "–"), with the notes of :func:`merge_tables`; None when no run has a stream case
    (:func:`has_streams`)."""
    if not any(has_streams(records) for _, records in runs.by_key.values()):
        return None
    rows = [TableRow(model, method, aggregate(records)) for (model, method), (_, records) in runs.by_key.items()]
    return table3(rows, [summary.protocol for summary, _ in runs.by_key.values()]) + runs.notes()


def merge_relations(runs: Runs) -> str:
    """The per-relation breakdown of each model × method of ``runs``, each under a
    ``## model / method`` heading, then the notes of :func:`merge_tables`."""
    return "\n\n".join(
        f"## {model} / {method}\n\n{relation_table(records, summary.distortion_scaling)}"
        for (model, method), (summary, records) in runs.by_key.items()
    ) + runs.notes()


def read_cases(path: Path) -> list[CaseRecord]:
    """The records of a ``cases.jsonl``, in file order, each line validated by
    :meth:`CaseRecord.from_mapping <pytest_kedit.results.record.CaseRecord.from_mapping>`; a torn
    last line (:func:`~pytest_kedit.storage.jsonl.read_json_lines`) is left out. Raises
    :class:`ReportError` naming the file, and the line of a line that is not a case record."""
    try:
        lines = read_json_lines(path)
    except FileNotFoundError:
        raise ReportError(path, _MISSING) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ReportError(path, f"cannot read: {exc}") from None
    except JsonLinesError as exc:
        raise ReportError(path, f"not valid JSON: {exc.reason}", line=exc.line) from None
    records = []
    for number, value in lines:
        try:
            records.append(CaseRecord.from_mapping(value))
        except RecordError as exc:
            raise ReportError(path, str(exc), line=number) from None
    return records


def _write_text(path: Path, text: str) -> None:
    try:
        atomic_write_text(path, text)
    except OSError as exc:
        raise ReportError(path, f"cannot write: {exc.strerror or exc}") from None


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ReportError(path, _MISSING) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ReportError(path, f"cannot read: {exc}") from None
