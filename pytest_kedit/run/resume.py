"""Continuing an interrupted run (``--kedit-resume``): which recorded cases are reused, and when a
report folder may not be continued at all.

A run records its provenance (:func:`~pytest_kedit.results.provenance.provenance`: model and its
fingerprint, method, data, hyper-parameters, seed, protocol, versions) and its thresholds in
``run.json`` as soon as its first case is in ``cases.jsonl`` (:class:`~pytest_kedit.results.run_files.CaseLog`).
A resumed run continues that folder only under the same provenance and thresholds
(:data:`RESUME_FIELDS`); a case already recorded there, other than an error, is reported from
its record instead of being run again. The fields known from the options alone are compared
before any model loads (:func:`check_resume`); the model's fingerprint and the resolved
hyper-parameters once each process has loaded its model (:meth:`PreviousRun.check`).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pytest_kedit.errors import ConfigError
from pytest_kedit.results.provenance import LOADED_FIELDS, PROVENANCE_FIELDS, run_difference
from pytest_kedit.results.record import CaseRecord
from pytest_kedit.results.run_files import CASES_FILE, RUN_FILE, ReportError, read_cases

#: What must agree for a recorded case to be reused.
RESUME_FIELDS: tuple[str, ...] = (*PROVENANCE_FIELDS, "thresholds")


@dataclass(frozen=True)
class PreviousRun:
    """What a report folder holds of the run being resumed."""

    folder: Path
    #: the run's provenance; None when the folder has recorded no case yet
    provenance: dict[str, Any] | None = None
    #: case id -> its last record in ``cases.jsonl``
    records: dict[str, CaseRecord] = field(default_factory=dict)

    def reusable(self, case_id: str) -> CaseRecord | None:
        """A copy of the case's record when it can stand for running the case again: recorded,
        and not an error (errors run again)."""
        record = self.records.get(case_id)
        if record is None or record.outcome == "error":
            return None
        return dataclasses.replace(record)

    def check(self, current: Mapping[str, Any], fields: Sequence[str] = RESUME_FIELDS) -> None:
        """ConfigError, in one line naming the first differing field, when ``current`` (a
        provenance) is not the recorded run's in ``fields`` (the data compared over the files both
        read: :func:`~pytest_kedit.results.provenance.run_difference`)."""
        if self.provenance is None:
            return
        difference = run_difference(self.provenance, current, fields)
        if difference is not None:
            raise ConfigError(f"--kedit-resume: {self.folder} holds a different run ({difference}); "
                              "resume with the same options, or report into a new folder")


def read_previous(folder: str | Path) -> PreviousRun:
    """The run recorded in ``folder``: none (an empty :class:`PreviousRun`) when the folder or its
    ``cases.jsonl`` does not exist or holds no case. The records are read by
    :func:`~pytest_kedit.results.run_files.read_cases` (the last record of a case counts), the
    provenance from ``run.json``. Raises :class:`~pytest_kedit.results.run_files.ReportError` naming
    the file (and line) when a file is malformed, or when cases are recorded without ``run.json``."""
    target = Path(folder)
    cases = target / CASES_FILE
    records = {record.case_id: record for record in read_cases(cases)} if cases.is_file() else {}
    if not records:
        return PreviousRun(target)
    run_file = target / RUN_FILE
    if not run_file.is_file():
        raise ReportError(target, f"{CASES_FILE} has cases but no {RUN_FILE} says how they were made; "
                                  "run without --kedit-resume")
    recorded = _read_object(run_file).get("provenance")
    if not isinstance(recorded, dict):
        raise ReportError(run_file, "field 'provenance' must be an object")
    return PreviousRun(target, recorded, records)


def check_resume(previous: PreviousRun, current: Mapping[str, Any]) -> None:
    """Before any model loads: the run being resumed agrees with ``current`` (the provenance known
    from the options) in every field but :data:`LOADED_FIELDS`."""
    previous.check(current, [name for name in RESUME_FIELDS if name not in LOADED_FIELDS])


def merged(previous: Mapping[str, CaseRecord], records: Iterable[CaseRecord]) -> list[CaseRecord]:
    """The records of a resumed run: this session's, then the previous run's for the cases this
    session did not report (an error it did not run again, a case outside ``-k``)."""
    current = list(records)
    reported = {record.case_id for record in current}
    return current + [record for case_id, record in previous.items() if case_id not in reported]


def _read_object(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise ReportError(path, f"cannot read: {exc}") from None
    except json.JSONDecodeError as exc:
        raise ReportError(path, f"not valid JSON: {exc.msg}", line=exc.lineno) from None
    if not isinstance(data, dict):
        raise ReportError(path, "must be a JSON object")
    return data
