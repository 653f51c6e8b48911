"""A benchmark run inside pytest: the worker side runs cases, the controller side collects them.

Under pytest-xdist each worker has a ``Runner`` (its own model, editor and harness); case records
travel to the controller in ``user_properties`` and the controller's ``Collector`` appends them to
the case log as they arrive and aggregates them at the end.
"""

from __future__ import annotations

import dataclasses
import json
import os
import platform
import time
from dataclasses import dataclass, field
from importlib.metadata import version
from typing import TYPE_CHECKING, Any

from . import report
from .cases import Case, ConflictCase
from .datasets import Entry, Suite, load_suite
from .errors import DataError, KeditError
from .options import KeditOptions
from .thresholds import failures

if TYPE_CHECKING:
    from .editors.base import Editor
    from .protocols import CaseResult, Harness

USER_PROPERTY = "kedit"


@dataclass
class CaseOutcome:
    """What a suite test gets back: the metrics and the thresholds the case missed."""

    case: Case
    result: CaseResult
    failures: list[str]

    @property
    def metrics(self) -> dict[str, float]:
        return self.result.metrics


class Runner:
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
            from .models import load_model
            from .protocols import Harness

            if self.worker_count:
                # Each xdist worker gets its share of the cores, so serial and parallel runs compute alike.
                torch.set_num_threads(max(1, (os.cpu_count() or 1) // self.worker_count))
            loaded = load_model(self.options.model, self.options.device, self.options.dtype, self.worker_index)
            editor = create_editor(self.options.method, loaded, self.options.hparams)
            self._harness = Harness(loaded, editor, self.options.distortion, self.options.seed)
        return self._harness

    def run(self, entry: Entry) -> tuple[CaseOutcome | None, dict[str, Any]]:
        """Run one case; a user error (bad record, bad request) becomes the record's error."""
        if isinstance(entry, DataError):
            return None, self.error_record(entry, entry)
        try:
            result = self.harness.run(entry)
        except KeditError as exc:
            return None, self.error_record(entry, exc)
        outcome = CaseOutcome(entry, result, failures(result.metrics, result.evidence, self.options.thresholds))
        return outcome, self._record(entry, outcome=outcome)

    def error_record(self, entry: Entry, error: BaseException) -> dict[str, Any]:
        message = str(error) if isinstance(error, KeditError) else f"{type(error).__name__}: {error}"
        return self._record(None if isinstance(entry, DataError) else entry, error=message)

    def _record(self, case: Case | None, outcome: CaseOutcome | None = None, error: str | None = None) -> dict[str, Any]:
        harness = self._harness
        return {
            "case_id": case.case_id if case else None,
            "split": case.split if case else None,
            "relation": case.relation if case else None,
            "arity": None if case is None or isinstance(case, ConflictCase) else case.arity,
            "model": self.options.model,
            "method": self.options.method,
            "metrics": outcome.metrics if outcome else {},
            "probabilities": outcome.result.probabilities if outcome else {},
            "failures": outcome.failures if outcome else [],
            "error": error,
            "timings": outcome.result.timings if outcome else {},
            "process": _process_info(harness) if harness else None,
        }


def _process_info(harness: Harness) -> dict[str, Any]:
    loaded, editor = harness.loaded, harness.editor
    return {
        "worker": f"{platform.node()}:{os.getpid()}",
        "model_load": loaded.load_seconds,
        "model_source": loaded.source,
        "model_fingerprint": loaded.fingerprint,
        "device": str(loaded.device),
        "dtype": str(loaded.dtype).removeprefix("torch."),
        "hparams": _hparams_dict(editor),
        # where second-moment statistics came from (locate-and-edit methods); empty until needed
        "statistics": dict(getattr(editor, "statistics_info", None) or {}),
    }


def _hparams_dict(editor: Editor) -> dict[str, Any]:
    hp = editor.hparams
    return dataclasses.asdict(hp) if dataclasses.is_dataclass(hp) else dict(vars(hp))


@dataclass
class Collector:
    """Controller side: gathers records, keeps the case log, builds the tables and summary."""

    options: KeditOptions
    records: list[dict[str, Any]] = field(default_factory=list)
    started: float = field(default_factory=time.perf_counter)
    log: report.CaseLog | None = None

    def __post_init__(self) -> None:
        if self.options.report:
            self.log = report.CaseLog(self.options.report)

    def add(self, record: dict[str, Any]) -> None:
        self.records.append(record)
        if self.log is not None:
            self.log.append(record)

    def summary(self, suite: Suite | None) -> dict[str, Any]:
        processes = {r["process"]["worker"]: r["process"] for r in self.records if r.get("process")}
        first = next(iter(processes.values()), {})
        phases = {phase: sum(r["timings"].get(phase, 0.0) for r in self.records) for phase in ("edit", "probe", "restore")}
        return {
            **self.options.summary(),
            "hparams": first.get("hparams", {}),
            "model_source": first.get("model_source"),
            "model_fingerprint": first.get("model_fingerprint"),
            "statistics": next((p["statistics"] for p in processes.values() if p.get("statistics")), {}),
            "data": {"source": suite.source if suite else self.options.data, "fingerprint": suite.fingerprint if suite else None},
            "versions": _versions(),
            "timings": {
                "model_load": sum(p["model_load"] for p in processes.values()),
                **phases,
                "total": time.perf_counter() - self.started,
                "processes": len(processes),
            },
        }

    def finish(self, suite: Suite | None) -> report.RunReport:
        """The run's report (summary, tables, per-relation breakdown), written to the report
        folder when there is one."""
        summary = self.summary(suite)
        if self.log is not None:
            self.log.close()
        if self.options.report:
            return report.write_report(self.options.report, summary, self.records)
        return report.run_report(summary, self.records)


def encode_record(record: dict[str, Any]) -> str:
    return json.dumps(record, sort_keys=True)


def _versions() -> dict[str, str]:
    return {
        "pytest_kedit": version("pytest-kedit"),
        "torch": version("torch"),
        "transformers": version("transformers"),
        "python": platform.python_version(),
    }


def assert_thresholds(outcome: CaseOutcome) -> None:
    """Fail the calling test with one line per missed threshold, naming the probabilities behind it."""
    __tracebackhide__ = True
    if outcome.failures:
        import pytest

        pytest.fail("\n".join(outcome.failures), pytrace=False)
