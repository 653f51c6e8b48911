"""A benchmark run inside pytest: a :class:`Worker` runs cases, the :class:`Collector` gathers them.

Each process that runs tests (the only one, or each pytest-xdist worker) has a ``Worker``: its
own model, editor and harness, loaded on first use, turning each case into a
:class:`~pytest_kedit.results.record.CaseRecord`. Records, and once per worker the process's own
facts, travel to the controller as :mod:`pytest_kedit.run.transport` packs them. The controller's
``Collector`` appends records to the case log as they arrive and builds the summary and tables at
the end.
"""

from __future__ import annotations

import dataclasses
import os
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib.metadata import version
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from pytest_kedit.benchmark.registry import METRICS, SPLITS
from pytest_kedit.benchmark.thresholds import failures
from pytest_kedit.ci.baseline import (
    Baseline,
    BaselineError,
    baseline_difference,
    display_path,
    mismatch_message,
    read_baseline,
    update_baseline,
    version_note,
)
from pytest_kedit.ci.gates import GateResult
from pytest_kedit.ci.gating import gate_run, judge_record
from pytest_kedit.ci.regression import Judgement
from pytest_kedit.dataset.input_length import context_length, overlong
from pytest_kedit.dataset.sources import Entry, Suite, load_suite
from pytest_kedit.errors import ConfigError, DataError, KeditError
from pytest_kedit.results.provenance import provenance
from pytest_kedit.results.record import PHASES, CaseRecord, outcome_counts
from pytest_kedit.results.run_files import CaseLog, ReportError, RunReport, run_report, write_report
from pytest_kedit.results.summary import RunData, RunSummary
from pytest_kedit.run.options import KeditOptions
from pytest_kedit.run.resume import PreviousRun, merged, read_previous

if TYPE_CHECKING:
    from pytest_kedit.benchmark.cases import Case
    from pytest_kedit.run.harness import Harness

class Worker:
    """Loads the model and editor once per process (and applies the edits ``--kedit-carry`` carries)
    and runs cases on them."""

    def __init__(self, options: KeditOptions, worker_index: int | None = None, worker_count: int | None = None):
        self.options = options
        self.worker_index = worker_index
        self.worker_count = worker_count
        self._suite: Suite | None = None
        self._harness: Harness | None = None
        self._baseline: Baseline | None = None
        self._previous: PreviousRun | None = None
        self._resume_checked = False

    @property
    def suite(self) -> Suite:
        if self._suite is None:
            options = self.options
            self._suite = load_suite(options.data, options.splits, options.limit, options.sample, options.seed,
                                     options.shard, options.stream.carry)
        return self._suite

    @property
    def harness(self) -> Harness:
        if self._harness is None:
            # Imported here so that pytest runs without kedit tests never pay for torch/transformers.
            import torch

            from pytest_kedit.editors import create_editor
            from pytest_kedit.model.loading import load_model
            from pytest_kedit.run.harness import Harness

            if self.worker_count:
                # Each xdist worker gets its share of the cores, so that the workers do not oversubscribe
                # them. This changes the thread layout, and with it the last digits of a probability:
                # results are exact within one layout, not across (README, "compare like with like").
                torch.set_num_threads(max(1, (os.cpu_count() or 1) // self.worker_count))
            loaded = load_model(self.options.model, self.options.device, self.options.dtype, self.worker_index)
            protocol = self.options.protocol
            editor = create_editor(self.options.method, loaded, self.options.hparams, protocol.hparams_defaults())
            harness = Harness(loaded, editor, protocol, self.options.seed, self.options.stream)
            if self.suite.carried:
                harness.carry(self.suite.carried)
            self._harness = harness
        return self._harness

    def run(self, entry: Entry) -> CaseRecord:
        """Run one case; a user error (bad record, bad request) becomes the record's error.
        Resuming (``--kedit-resume``), a case the folder recorded is its record, not run again."""
        if isinstance(entry, DataError):
            return self.error_record(entry, entry)
        if self.options.resume:
            self.check_resume()
            reused = self.previous_run.reusable(entry.case_id)
            if reused is not None:
                return reused
        problem = self.unrunnable(entry)
        if problem is not None:
            return self.error_record(entry, problem)
        try:
            result = self.harness.run(entry)
        except KeditError as exc:
            return self.error_record(entry, exc)
        missed = failures(result.metrics, result.evidence, self.options.thresholds.for_split(entry.split))
        record = self._record(entry)
        record.outcome = "failed" if missed else "passed"
        record.metrics, record.probabilities, record.timings = result.metrics, result.probabilities, result.timings
        record.curve = result.curve
        record.failures = [failure.message for failure in missed]
        record.failed_metrics = [failure.metric for failure in missed]
        return record

    @property
    def baseline(self) -> Baseline:
        """The baseline the run is gated against, read once (ConfigError naming the file)."""
        if self._baseline is None:
            if self.options.baseline is None:
                raise ConfigError("no baseline: pass --kedit-baseline")
            self._baseline = read_baseline(Path(self.options.baseline))
        return self._baseline

    def provenance(self) -> dict[str, Any]:
        """This process's :func:`~pytest_kedit.results.provenance.provenance`; the model fingerprint and
        the hparams are None and empty until the model has loaded."""
        info, options = self.process_info() or {}, self.options
        return provenance(model=options.model, model_fingerprint=info.get("model_fingerprint"), method=options.method,
                          data_fingerprint=self.suite.fingerprint, data_files=self.suite.files,
                          hparams=info.get("hparams", {}), editor_fingerprint=info.get("editor_fingerprint"),
                          seed=options.seed, distortion_scaling=options.distortion, protocol=options.protocol.name,
                          probe_version=info.get("probe_version"), package_version=version("pytest-kedit"),
                          thresholds=options.thresholds.specs(), sequential=options.stream.given())

    def unrunnable(self, entry: Entry) -> DataError | None:
        """Why ``entry`` cannot run, found before any edit: its record is bad, or one of its model
        inputs is longer than the model's context (this loads the model, for its tokenizer)."""
        if isinstance(entry, DataError):
            return entry
        harness = self.harness
        limit = context_length(harness.loaded.model.config, harness.loaded.tokenizer)
        if limit is None:
            return None

        def length(prefix: str, target: str) -> int:
            try:
                encoded = harness.encoder(prefix, target)
            except ValueError:  # an object of no tokens: the probe reports it
                return 0
            return len(encoded.prefix) + len(encoded.target)

        split = SPLITS[entry.split]
        found = overlong(entry, length, limit, split.benchmark.prompts_file)
        if found is None:
            return None
        return DataError(str(Path(self.suite.source) / split.data_file), found.message("the model's context"),
                         record=entry.index, field=found.field)

    @property
    def previous_run(self) -> PreviousRun:
        """The run in the report folder this run resumes, read once (an empty one when not resuming)."""
        if self._previous is None:
            report = self.options.report
            self._previous = read_previous(report) if self.options.resume and report else PreviousRun(Path())
        return self._previous

    def check_resume(self) -> None:
        """Resuming: ConfigError naming the first field in which this process's provenance differs
        from the recorded run's. It needs the model's fingerprint and hparams, so it loads the model."""
        if self.options.resume and not self._resume_checked:
            _ = self.harness
            self.previous_run.check(self.provenance())
            self._resume_checked = True

    def check_baseline(self) -> None:
        """When the run is gated against a baseline: ConfigError, one line naming the first
        provenance field in which the loaded model, editor and data differ from the baseline's."""
        if self.options.gating:
            difference = baseline_difference(self.baseline, self.provenance(), self.options.baseline_ignore)
            if difference is not None:
                raise ConfigError(mismatch_message(self.baseline, difference))

    def judge(self, record: CaseRecord) -> Judgement | None:
        """When the run is gated against a baseline, the record's verdict against it, also kept in
        the record (``verdict``, ``regressions``); None otherwise, and for an error."""
        if not self.options.gating:
            return None
        judgement = judge_record(record, self.baseline, self.options.thresholds, self.options.tolerance)
        if judgement is not None:
            record.verdict, record.regressions = judgement.verdict, list(judgement.regressions)
        return judgement

    def error_record(self, entry: Entry, error: BaseException) -> CaseRecord:
        """The record of a case that could not run: ``error`` replaces its result."""
        record = self._record(None if isinstance(entry, DataError) else entry)
        record.outcome = "error"
        record.error = str(error) if isinstance(error, KeditError) else f"{type(error).__name__}: {error}"
        return record

    def _record(self, case: Case | None) -> CaseRecord:
        """A record of ``case`` without results; a case that could not be parsed has no id yet
        (the plugin names it by its test id)."""
        return CaseRecord(
            case_id=case.case_id if case else "",
            split=case.split if case else "",
            relation=case.relation_group if case else None,
            arity=getattr(case, "arity", None),
            model=self.options.model,
            method=self.options.method,
        )

    def process_info(self) -> dict[str, Any] | None:
        """What this process loaded, once the model has been loaded: None before."""
        if self._harness is None:
            return None
        from pytest_kedit.model.probe import PROBE_VERSION  # torch is loaded with the harness

        loaded, editor = self._harness.loaded, self._harness.editor
        return {
            "worker": f"{platform.node()}:{os.getpid()}",
            "model_load": loaded.load_seconds,
            "model_source": loaded.source,
            "model_fingerprint": loaded.fingerprint,
            "device": str(loaded.device),
            "dtype": str(loaded.dtype).removeprefix("torch."),
            "hparams": _hparams_dict(editor.hparams),
            "editor_fingerprint": editor.fingerprint,
            "probe_version": PROBE_VERSION,
            # where second-moment statistics came from (locate-and-edit methods); empty until needed
            "statistics": dict(getattr(editor, "statistics_info", None) or {}),
        }


def name_record(record: CaseRecord, test_id: str) -> None:
    """Name a record that has no case (its record could not be parsed) by its test's parameter
    id (``reverse-0042``), and its split by the id's first part."""
    record.case_id = record.case_id or test_id
    record.split = record.split or record.case_id.split("-")[0]


def case_test_end(record: CaseRecord, judgement: Judgement | None, update_baseline: bool) -> tuple[str, str] | None:
    """How the test of a case that ran ends other than by passing: ``("fail", message)`` for an
    error or a case that regressed against the baseline; ``("xfail", reason)`` for a known
    failure, and with ``--kedit-baseline-update`` (``update_baseline``) for a missed threshold,
    which the baseline records as a known failure. None: the test goes on."""
    if record.error is not None:
        return "fail", record.error
    if judgement is not None and judgement.verdict == "regressed":
        return "fail", "\n".join(judgement.regressions)
    if judgement is not None and judgement.verdict == "known":
        return "xfail", judgement.reason
    if update_baseline and record.failures:
        return "xfail", "recorded in the baseline as a known failure: " + ", ".join(
            f"{METRICS[metric].label} = {record.metrics[metric]:.4g}" for metric in record.failed_metrics)
    return None


def _hparams_dict(hparams: Any) -> dict[str, Any]:
    if dataclasses.is_dataclass(hparams) and not isinstance(hparams, type):
        return dataclasses.asdict(hparams)
    return dict(vars(hparams))


@dataclass
class Collector:
    """Controller side: gathers records and the workers' process facts, keeps the case log,
    builds the tables and summary."""

    options: KeditOptions
    #: the run this one resumes (an empty one when not resuming), read once by its owner
    resumed: Callable[[], PreviousRun]
    records: list[CaseRecord] = field(default_factory=list)
    processes: list[dict[str, Any]] = field(default_factory=list)
    started: float = field(default_factory=time.perf_counter)
    log: CaseLog | None = None
    #: the number of cases collected for the run (None: not known)
    expected: int | None = None
    #: resuming: the records that came from the folder instead of a run
    reused: int = 0
    #: cases whose test errored in its setup: their data cannot run
    bad_data: int = 0
    #: why the report folder could not be written (a full disk): the case log stopped there
    report_error: str | None = None

    def __post_init__(self) -> None:
        if self.options.report:
            self.log = CaseLog(self.options.report, resume=self.options.resume)

    @property
    def previous(self) -> dict[str, CaseRecord]:
        """Resuming: the records of the run being continued, by case id ({} otherwise)."""
        return self.resumed().records

    def add(self, record: CaseRecord, provenance: dict[str, Any] | None = None) -> None:
        """Keep ``record`` and log it (with the provenance of the process that made it), unless it
        is the very record the resumed folder already holds. A log that cannot be written is
        closed, with what it already holds, and :attr:`report_error` says why."""
        self.records.append(record)
        if self.previous.get(record.case_id) == record:
            self.reused += 1
        elif self.log is not None:
            try:
                self.log.append(record, provenance, self.expected)
            except ReportError as exc:
                self.report_error = str(exc)
                self.log.close()
                self.log = None

    def add_report(self, record: CaseRecord, provenance: dict[str, Any] | None, nodeid: str, outcome: str,
                   xfailed: bool, bad_data: bool) -> None:
        """:meth:`add` the record a test's report carried, with the test's ``nodeid`` and its
        outcome: ``error`` for a case that could not run, ``xfailed`` for a test that xfailed,
        else the test's ``outcome``; ``bad_data`` when the test errored in its setup (the case's
        data cannot run)."""
        record.nodeid = nodeid
        record.outcome = "error" if record.error else "xfailed" if xfailed else outcome
        self.add(record, provenance)
        self.bad_data += bad_data

    def run_records(self) -> list[CaseRecord]:
        """The run's records: this session's and, resuming, the earlier ones it did not report again."""
        return merged(self.previous, self.records) if self.options.resume else self.records

    def add_process(self, info: dict[str, Any] | None) -> None:
        if info is not None:
            self.processes.append(info)

    def summary(self, suite: Suite | None, interrupted: bool = False) -> RunSummary:
        """The run summary; ``complete`` is false when the run was interrupted or finished fewer
        cases than were collected."""
        options = self.options
        first = self.processes[0] if self.processes else {}
        records = self.run_records()
        done = len(records)
        expected = max(self.expected or 0, done)
        phases = {phase: sum(r.timings.get(phase, 0.0) for r in records) for phase in PHASES}
        return RunSummary(
            model=options.model,
            method=options.method,
            hparams_file=options.hparams,
            device=options.device,
            dtype=options.dtype,
            splits=options.splits,
            limit=options.limit,
            sample=None if options.sample is None else {"size": options.sample, "seed": options.seed},
            shard=options.shard,
            seed=options.seed,
            distortion_scaling=options.distortion,
            protocol=options.protocol.name,
            thresholds=options.thresholds,
            sequential=options.stream.given(),
            hparams=first.get("hparams", {}),
            model_source=first.get("model_source"),
            model_fingerprint=first.get("model_fingerprint"),
            editor_fingerprint=first.get("editor_fingerprint"),
            probe_version=first.get("probe_version"),
            statistics=next((p["statistics"] for p in self.processes if p.get("statistics")), {}),
            data=RunData(suite.source, suite.fingerprint, suite.files) if suite else RunData(options.data, None, {}),
            versions=_versions(),
            complete=not interrupted and done >= expected,
            cases_expected=expected,
            cases_done=done,
            outcomes=outcome_counts(records),
            timings={
                "model_load": sum(p["model_load"] for p in self.processes),
                **phases,
                "total": time.perf_counter() - self.started,
                "processes": len(self.processes),
            },
        )

    def verdict(self, suite: Suite | None, interrupted: bool = False) -> SessionVerdict:
        """At the end of the session (after every record and process has arrived): write the
        baseline (``--kedit-baseline-update``; not when no case reached the model), or judge the
        run against it (:func:`~pytest_kedit.ci.gating.gate_run`: the cases' verdicts counted, the
        gates checked); over the run's records (:meth:`run_records`: resuming, the earlier ones
        too). A case that regressed or is an error fails its own test; the session fails on a
        gate, or a baseline that cannot be written or read."""
        options, failed, records = self.options, False, self.run_records()
        lines: list[tuple[str, bool]] = []
        baseline: Baseline | None = None
        if options.update_baseline and options.baseline is not None and records:
            summary = self.summary(suite, interrupted)
            if summary.model_fingerprint is None:
                lines.append((f"baseline {display_path(Path(options.baseline))} not written: no case reached the model", True))
            else:
                try:
                    written, line = update_baseline(Path(options.baseline), summary.provenance(), records,
                                                    summary.complete, summary.cases_done, summary.cases_expected)
                    lines.append((line, not written))
                except BaselineError as exc:
                    lines.append((f"kedit: {exc}", True))
                    failed = True
        elif options.gating and options.baseline is not None:
            try:
                baseline = read_baseline(Path(options.baseline))
            except BaselineError as exc:  # removed or changed since the session started: nothing to judge against
                lines.append((f"kedit: {exc}", True))
                baseline, failed = Baseline(Path(options.baseline), {}, {}), True
        result = gate_run(records, baseline, options.thresholds, options.tolerance, options.gates, options.gate_mode)
        if baseline is not None and records and not failed:
            lines.append((result.verdict_line(baseline), result.cases_failed))
            note = version_note(baseline, self.summary(suite, interrupted).provenance())
            if note is not None:
                lines.append((note, False))
        return SessionVerdict(lines, result.gates, failed or result.gates_failed)

    def finish(self, suite: Suite | None, interrupted: bool = False) -> RunReport:
        """The run's report (summary, tables, per-relation breakdown), written to the report
        folder when there is one and it could be written so far; :attr:`report_error` says why
        it could not be written."""
        summary = self.summary(suite, interrupted)
        if self.log is not None:
            self.log.close()
        if self.options.report and self.report_error is None:
            try:
                return write_report(self.options.report, summary, self.run_records())
            except ReportError as exc:
                self.report_error = str(exc)
        return run_report(summary, self.run_records())


class SessionVerdict(NamedTuple):
    """What the end of a session adds to its tests' outcomes: the baseline, the gates."""

    #: for the terminal, each with whether it reports a problem: the baseline written or not
    #: (--kedit-baseline-update), or the verdicts of the cases against it
    lines: list[tuple[str, bool]]
    gates: list[GateResult]
    #: the baseline could not be written or read, or a gate failed: the session fails
    failed: bool


def _versions() -> dict[str, str]:
    return {
        "pytest_kedit": version("pytest-kedit"),
        "torch": version("torch"),
        "transformers": version("transformers"),
        "python": platform.python_version(),
    }


def assert_thresholds(record: CaseRecord) -> None:
    """Fail the calling test with one line per missed threshold, naming the probabilities behind it."""
    __tracebackhide__ = True
    if record.failures:
        import pytest

        pytest.fail("\n".join(record.failures), pytrace=False)
