"""What a case's record becomes in pytest's JUnit XML (``--junitxml``): one property per metric.

A case's record travels from the process that ran it to the controller as the user property
``kedit`` (a JSON line, :data:`pytest_kedit.run.session.USER_PROPERTY`), because under pytest-xdist
the report's ``user_properties`` are what reaches the controller. pytest's junitxml writes every
user property of a test; the controller therefore replaces that JSON line, before junitxml sees
the report, by the properties of :func:`junit_properties`. Pure: no pytest, no torch.
"""

from __future__ import annotations

from collections.abc import Sequence

from pytest_kedit.benchmark.registry import METRICS, SPLITS
from pytest_kedit.results.record import CaseRecord

#: A user property of a test report: (name, value).
Property = tuple[str, object]


def junit_properties(record: CaseRecord) -> list[tuple[str, str]]:
    """The properties of a case: ``kedit_case`` (``reverse-0042``), ``kedit_split``,
    ``kedit_relation`` (when known), ``kedit_verdict`` (against a baseline, when there is one),
    ``kedit_error`` (when the case could not run), then each metric of the record under its
    registry label (``CS_imp``, ``Single Succ``), in the split's table order, its value written
    with ``repr`` (``0.0``, ``0.4182...``: every digit, so the value reads back exactly)."""
    properties = [("kedit_case", record.case_id), ("kedit_split", record.split)]
    optional = (("kedit_relation", record.relation), ("kedit_verdict", record.verdict), ("kedit_error", record.error))
    properties += [(name, value) for name, value in optional if value is not None]
    order = SPLITS[record.split].metrics if record.split in SPLITS else ()
    keys = [key for key in order if key in record.metrics] + [key for key in record.metrics if key not in order]
    return properties + [(METRICS[key].label, repr(record.metrics[key])) for key in keys]


def replace_record(user_properties: Sequence[Property], name: str) -> tuple[CaseRecord | None, list[Property]]:
    """The record carried by the property ``name`` (the last one, if several), and ``user_properties``
    with it replaced in place by :func:`junit_properties`; ``(None, the properties unchanged)``
    when there is none."""
    carried = [value for key, value in user_properties if key == name]
    if not carried:
        return None, list(user_properties)
    record = CaseRecord.from_json(str(carried[-1]))
    replaced: list[Property] = []
    for key, value in user_properties:
        if key != name:
            replaced.append((key, value))
        elif value is carried[-1]:
            replaced.extend(junit_properties(record))
    return record, replaced
