"""A run judged against its baseline and gated, for both places that do it: the end of a plugin
session (its records, the baseline it read) and ``kedit gate`` (the run that report folders of
one model × method hold together, shards merged: :func:`~pytest_kedit.results.run_files.load_runs`).
Every case's verdict, the errors, the gates, and their Markdown. Pure.

A case's verdict does not depend on the other cases, and a gate is a statistic of the split, so
gating the merged shards of a CI matrix gives what gating the unsharded run would.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

from tabulate import tabulate

from pytest_kedit.benchmark.registry import METRICS, split_order
from pytest_kedit.benchmark.thresholds import Thresholds
from pytest_kedit.ci.baseline import Baseline, display_path
from pytest_kedit.ci.gates import Gate, GateMode, GateResult, check_gates, gates_markdown
from pytest_kedit.ci.regression import Judgement, gated_cases_fail, judge, verdict_line
from pytest_kedit.errors import KeditError
from pytest_kedit.results.provenance import DATA_FILES, run_difference
from pytest_kedit.results.record import CaseRecord
from pytest_kedit.results.run_files import Runs, load_run
from pytest_kedit.results.summary import RunSummary
from pytest_kedit.results.tables import DASH


class OneRun(NamedTuple):
    """The run that report folders of one model × method hold together."""

    folders: list[str]
    #: the summary of the run (of the merged shards, or of the last folder)
    summary: RunSummary
    records: list[CaseRecord]
    #: its provenance, with the data files every folder read
    provenance: dict[str, Any]


def one_run(runs: Runs) -> OneRun:
    """The single model × method of ``runs``. KeditError, in one line, when the folders hold
    several, or when folders that are not shards were made differently (the first provenance
    difference, the data compared over the files both read; shards are checked as they merge)."""
    if len(runs.by_key) != 1:
        found = ", ".join(f"{model} / {method} ({', '.join(runs.sources[(model, method)])})"
                          for model, method in runs.by_key)
        raise KeditError(f"the folders hold {len(runs.by_key)} runs, {found}: give the folders of one model × method")
    key, (summary, records) = next(iter(runs.by_key.items()))
    folders = runs.sources[key]
    current = summary.provenance()
    if summary.shards is None:
        for folder in folders[:-1]:
            other = load_run(folder)[0].provenance()
            difference = run_difference(other, current)
            if difference is not None:
                raise KeditError(f"{folder} and {folders[-1]} are not parts of one run: {difference}")
            current[DATA_FILES] = {**other[DATA_FILES], **current[DATA_FILES]}
    return OneRun(folders, summary, records, current)


def judge_record(record: CaseRecord, baseline: Baseline, thresholds: Thresholds, tolerance: float) -> Judgement | None:
    """The verdict of ``record`` against its case in ``baseline``
    (:func:`~pytest_kedit.ci.regression.judge`, under ``thresholds`` and ``tolerance``); None for
    an error, which is not judged."""
    if record.outcome == "error":
        return None
    return judge(record.split, record.metrics, baseline.metrics(record.key), thresholds.for_split(record.split),
                 tolerance)


class RunGate(NamedTuple):
    """A run judged against its baseline and gated: what ``kedit gate`` reports, and what the end
    of a session adds to its tests' outcomes."""

    #: each record that is not an error, with its judgement (none without a baseline)
    judged: list[tuple[CaseRecord, Judgement]]
    errors: int
    gates: list[GateResult]

    @property
    def cases_failed(self) -> bool:
        """A case regressed or is an error (:func:`~pytest_kedit.ci.regression.gated_cases_fail`)."""
        return gated_cases_fail((judgement.verdict for _, judgement in self.judged), self.errors)

    @property
    def gates_failed(self) -> bool:
        """A gate failed."""
        return any(result.failed for result in self.gates)

    @property
    def failed(self) -> bool:
        """A case regressed, a case is an error, or a gate failed: the gated run fails."""
        return self.cases_failed or self.gates_failed

    def verdict_line(self, baseline: Baseline) -> str:
        """The verdicts counted (:func:`~pytest_kedit.ci.regression.verdict_line`), naming the baseline's file."""
        return verdict_line(display_path(baseline.path), (judgement.verdict for _, judgement in self.judged), self.errors)


def gate_run(records: Sequence[CaseRecord], baseline: Baseline | None, thresholds: Thresholds, tolerance: float,
             gates: Sequence[Gate], mode: GateMode) -> RunGate:
    """Judge every record against ``baseline`` (:func:`judge_record`) and check ``gates``
    (:func:`~pytest_kedit.ci.gates.check_gates`) over the run's records and the baseline's.
    Without a baseline (None: none is given, or it is being updated) no case is judged and the
    gates relative to it are not checked."""
    judged = [] if baseline is None else [(record, judgement) for record in records
                                          if (judgement := judge_record(record, baseline, thresholds, tolerance)) is not None]
    errors = sum(record.outcome == "error" for record in records)
    return RunGate(judged, errors, check_gates(gates, records, None if baseline is None else baseline.cases, mode))


def gate_markdown(title: str, baseline: Baseline, result: RunGate, mode: GateMode, note: str = "") -> str:
    """The report of :func:`gate_run`: ``title`` as a heading, ``note`` (a partial run), the
    verdict line, the regressed cases (case, metric, baseline and run values, how much worse) and
    the gates' table."""
    parts = [f"## {title}", *([note] if note else []), result.verdict_line(baseline)]
    rows = []
    for record, judgement in sorted(result.judged, key=lambda item: (split_order(item[0].split), item[0].case_id)):
        before = baseline.metrics(record.key) or {}
        for metric in judgement.regressed:
            value = record.metrics[metric]
            was = before.get(metric)
            rows.append([record.case_id, METRICS[metric].label, DASH if was is None else f"{was:.4g}", f"{value:.4g}",
                         DASH if was is None else f"{METRICS[metric].worse_by(was, value):.4g}"])
    if rows:
        parts.append("Regressed cases:\n\n" + tabulate(rows, headers=["case", "metric", "baseline", "run", "worse by"],
                                                       tablefmt="pipe", disable_numparse=True,
                                                       colalign=("left", "left", "right", "right", "right")))
    if result.gates:
        parts.append(gates_markdown(result.gates, mode))
    return "\n\n".join(parts)
