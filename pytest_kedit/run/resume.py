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
from typing import TYPE_CHECKING, Any

from pytest_kedit.errors import ConfigError
from pytest_kedit.results.provenance import LOADED_FIELDS, PROVENANCE_FIELDS, provenance, run_difference
from pytest_kedit.results.record import CaseRecord, RecordError
from pytest_kedit.results.run_files import CASES_FILE, RUN_FILE, SUMMARY_FILE, ReportError

if TYPE_CHECKING:
    from pytest_kedit.run.options import KeditOptions

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
    ``cases.jsonl`` does not exist or is empty. The provenance comes from ``run.json``, else from
    ``summary.json`` (a finished run). Raises :class:`~pytest_kedit.results.run_files.ReportError` naming
    the file (and line) when a file is malformed, or when cases are recorded without either file."""
    target = Path(folder)
    records = _read_records(target / CASES_FILE)
    if not records:
        return PreviousRun(target)
    run_file, summary_file = target / RUN_FILE, target / SUMMARY_FILE
    if run_file.is_file():
        recorded = _read_object(run_file).get("provenance")
        if not isinstance(recorded, dict):
            raise ReportError(run_file, "field 'provenance' must be an object")
    elif summary_file.is_file():
        recorded = provenance(_read_object(summary_file))
    else:
        raise ReportError(target, f"{CASES_FILE} has cases but neither {RUN_FILE} nor {SUMMARY_FILE} says how they "
                                  "were made (written by an older pytest-kedit?); run without --kedit-resume")
    return PreviousRun(target, recorded, records)


def check_resume(options: KeditOptions, current: Mapping[str, Any]) -> None:
    """Before any model loads: the report folder to resume is readable, and its run agrees with
    ``current`` (the provenance known from the options) in every field but :data:`LOADED_FIELDS`."""
    if options.resume and options.report:
        fields = [name for name in RESUME_FIELDS if name not in LOADED_FIELDS]
        read_previous(options.report).check(current, fields)


def merged(previous: Mapping[str, CaseRecord], records: Iterable[CaseRecord]) -> list[CaseRecord]:
    """The records of a resumed run: this session's, then the previous run's for the cases this
    session did not report (an error it did not run again, a case outside ``-k``)."""
    current = list(records)
    reported = {record.case_id for record in current}
    return current + [record for case_id, record in previous.items() if case_id not in reported]


def _read_records(path: Path) -> dict[str, CaseRecord]:
    """Case id -> last record of a ``cases.jsonl``; {} when there is none. A last line without
    its newline that does not parse is a write the interruption cut short, and is left out."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    except (OSError, UnicodeDecodeError) as exc:
        raise ReportError(path, f"cannot read: {exc}") from None
    lines = text.split("\n")
    records: dict[str, CaseRecord] = {}
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = CaseRecord.from_json(line)
        except (json.JSONDecodeError, RecordError) as exc:
            if number == len(lines):  # no newline after it: cut short
                break
            raise ReportError(path, f"not a case record: {exc}", line=number) from None
        records[record.case_id] = record
    return records


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
