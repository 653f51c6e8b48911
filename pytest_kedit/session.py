"""A benchmark run inside pytest: a :class:`Worker` runs cases, the :class:`Collector` gathers them.

Each process that runs tests (the only one, or each pytest-xdist worker) has a ``Worker``: its
own model, editor and harness, loaded on first use, turning each case into a
:class:`~pytest_kedit.record.CaseRecord`. Records travel to the controller in the tests'
``user_properties``; the process's own facts (model fingerprint, hparams, statistics, load time)
travel once per worker, in xdist's ``workeroutput``. The controller's ``Collector`` appends
records to the case log as they arrive and builds the summary and tables at the end.
"""

from __future__ import annotations

import dataclasses
import os
import platform
import time
from dataclasses import dataclass, field
from importlib.metadata import version
from typing import TYPE_CHECKING, Any

from .datasets import Entry, Suite, load_suite
from .errors import DataError, KeditError
from .options import KeditOptions
from .record import PHASES, CaseRecord
from .run_files import CaseLog, RunReport, run_report, write_report
from .thresholds import failures

if TYPE_CHECKING:
    from .cases import Case
    from .harness import Harness

#: The name of the user property that carries a case's record to the controller.
USER_PROPERTY = "kedit"


class Worker:
    """Loads the model and editor once per process and runs cases on them."""

    def __init__(self, options: KeditOptions, worker_index: int | None = None, worker_count: int | None = None):
        self.options = options
        self.worker_index = worker_index
        self.worker_count = worker_count
        self._suite: Suite | None = None
        self._harness: Harness | None = None

    @property
    def suite(self) -> Suite:
        if self._suite is None:
            options = self.options
            self._suite = load_suite(options.data, options.splits, options.limit, options.sample, options.seed)
        return self._suite

    @property
    def harness(self) -> Harness:
        if self._harness is None:
            # Imported here so that pytest runs without kedit tests never pay for torch/transformers.
            import torch

            from .editors import create_editor
            from .harness import Harness
            from .models import load_model

            if self.worker_count:
                # Each xdist worker gets its share of the cores, so serial and parallel runs compute alike.
                torch.set_num_threads(max(1, (os.cpu_count() or 1) // self.worker_count))
            loaded = load_model(self.options.model, self.options.device, self.options.dtype, self.worker_index)
            editor = create_editor(self.options.method, loaded, self.options.hparams)
            self._harness = Harness(loaded, editor, self.options.distortion, self.options.seed)
        return self._harness

    def run(self, entry: Entry) -> CaseRecord:
        """Run one case; a user error (bad record, bad request) becomes the record's error."""
        if isinstance(entry, DataError):
            return self.error_record(entry, entry)
        try:
            result = self.harness.run(entry)
        except KeditError as exc:
            return self.error_record(entry, exc)
        missed = failures(result.metrics, result.evidence, self.options.thresholds.for_split(entry.split))
        record = self._record(entry)
        record.outcome = "failed" if missed else "passed"
        record.metrics, record.probabilities, record.timings = result.metrics, result.probabilities, result.timings
        record.failures = [failure.message for failure in missed]
        record.failed_metrics = [failure.metric for failure in missed]
        return record

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
        loaded, editor = self._harness.loaded, self._harness.editor
        return {
            "worker": f"{platform.node()}:{os.getpid()}",
            "model_load": loaded.load_seconds,
            "model_source": loaded.source,
            "model_fingerprint": loaded.fingerprint,
            "device": str(loaded.device),
            "dtype": str(loaded.dtype).removeprefix("torch."),
            "hparams": _hparams_dict(editor.hparams),
            # where second-moment statistics came from (locate-and-edit methods); empty until needed
            "statistics": dict(getattr(editor, "statistics_info", None) or {}),
        }


def _hparams_dict(hparams: Any) -> dict[str, Any]:
    if dataclasses.is_dataclass(hparams) and not isinstance(hparams, type):
        return dataclasses.asdict(hparams)
    return dict(vars(hparams))


@dataclass
class Collector:
    """Controller side: gathers records and the workers' process facts, keeps the case log,
    builds the tables and summary."""

    options: KeditOptions
    records: list[CaseRecord] = field(default_factory=list)
    processes: list[dict[str, Any]] = field(default_factory=list)
    started: float = field(default_factory=time.perf_counter)
    log: CaseLog | None = None
    #: the number of cases collected for the run (None: not known)
    expected: int | None = None

    def __post_init__(self) -> None:
        if self.options.report:
            self.log = CaseLog(self.options.report)

    def add(self, record: CaseRecord) -> None:
        self.records.append(record)
        if self.log is not None:
            self.log.append(record)

    def add_process(self, info: dict[str, Any] | None) -> None:
        if info is not None:
            self.processes.append(info)

    def summary(self, suite: Suite | None, interrupted: bool = False) -> dict[str, Any]:
        """The run summary; ``complete`` is false when the run was interrupted or finished fewer
        cases than were collected."""
        first = self.processes[0] if self.processes else {}
        done = len(self.records)
        expected = max(self.expected or 0, done)
        phases = {phase: sum(r.timings.get(phase, 0.0) for r in self.records) for phase in PHASES}
        return {
            **self.options.summary(),
            "hparams": first.get("hparams", {}),
            "model_source": first.get("model_source"),
            "model_fingerprint": first.get("model_fingerprint"),
            "statistics": next((p["statistics"] for p in self.processes if p.get("statistics")), {}),
            "data": {"source": suite.source if suite else self.options.data, "fingerprint": suite.fingerprint if suite else None},
            "versions": _versions(),
            "complete": not interrupted and done >= expected,
            "cases_expected": expected,
            "cases_done": done,
            "timings": {
                "model_load": sum(p["model_load"] for p in self.processes),
                **phases,
                "total": time.perf_counter() - self.started,
                "processes": len(self.processes),
            },
        }

    def finish(self, suite: Suite | None, interrupted: bool = False) -> RunReport:
        """The run's report (summary, tables, per-relation breakdown), written to the report
        folder when there is one."""
        summary = self.summary(suite, interrupted)
        if self.log is not None:
            self.log.close()
        if self.options.report:
            return write_report(self.options.report, summary, self.records)
        return run_report(summary, self.records)


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
