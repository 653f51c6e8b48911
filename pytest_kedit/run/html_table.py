"""pytest-html's results table (``pytest --html=PAGE``): a column with each case's metrics.

The column is read from a test's user properties, where the controller puts a case's record as
its JUnit properties (:func:`~pytest_kedit.run.junit.junit_properties`) before any report writer
sees it; a test that is not a case gets an empty cell. Pure: no pytest-html, no torch.
"""

from __future__ import annotations

import html
from collections.abc import Sequence

from pytest_kedit.benchmark.registry import METRICS

#: Where the column goes among pytest-html's cells: after Result and Test, before Duration and Links.
COLUMN = 2
HEADER_CELL = '<th class="col-kedit">kedit metrics</th>'


def metrics_cell(properties: Sequence[tuple[str, object]]) -> str:
    """The column's cell of a test with these user properties: ``CS_exp 1, CS_imp 0, CM 0.01893``
    (each metric of a case's record under its label, 4 significant digits, in the properties'
    order), empty for a test that is not a case (no ``kedit_case`` property)."""
    names = {name for name, _ in properties}
    labels = {metric.label for metric in METRICS.values()}
    shown = [f"{name} {float(str(value)):.4g}" for name, value in properties if name in labels] if "kedit_case" in names else []
    return f'<td class="col-kedit">{html.escape(", ".join(shown))}</td>'
