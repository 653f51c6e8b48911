"""The docs say what the code does: the metric list in docs/metrics.md is the registry's."""

from __future__ import annotations

from pathlib import Path

from pytest_kedit.tables import metric_table

DOCS = Path(__file__).resolve().parents[1] / "docs"


def test_metrics_md_lists_the_registry_as_kedit_metrics_prints_it():
    assert metric_table() in (DOCS / "metrics.md").read_text(encoding="utf-8")
