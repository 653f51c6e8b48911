"""What a case's record becomes in pytest's JUnit XML (``--junitxml``): one property per metric.

A case's record reaches the controller as a JSON line in the test's ``user_properties``
(:mod:`pytest_kedit.run.transport`), and pytest's junitxml writes every user property of a test;
the controller therefore replaces that JSON line, before junitxml sees the report, by the
properties of :func:`junit_properties`. Pure: no pytest, no torch.
"""

from __future__ import annotations

from pytest_kedit.benchmark.registry import METRICS, SPLITS
from pytest_kedit.results.record import CaseRecord


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
