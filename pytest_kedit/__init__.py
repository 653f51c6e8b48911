"""pytest-kedit: the knowledge-editing pitfalls benchmark (ConflictEdit, RoundEdit) as a pytest plugin.

The public API: the case types, the Editor interface for new methods, the harness that runs a
case, the case record, the registry of splits and metrics, and the pure metric functions
(``pytest_kedit.benchmark.metrics``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pytest_kedit import metrics
from pytest_kedit.benchmark.cases import ConflictCase, Edit, EditRequest, Entity, Fact, Query, Relation, RoundCase
from pytest_kedit.benchmark.registry import METRICS, SPLITS, Metric, Split
from pytest_kedit.dataset.sources import Suite, load_suite
from pytest_kedit.errors import ConfigError, DataError, KeditError
from pytest_kedit.results.record import CaseRecord
from pytest_kedit.run.session import assert_thresholds

if TYPE_CHECKING:
    from pytest_kedit.editors.base import Editor, WeightDelta, snapshot
    from pytest_kedit.model.architectures import ModuleMap
    from pytest_kedit.model.loading import LoadedModel, load_model
    from pytest_kedit.run.harness import CaseResult, Harness

__version__ = "0.1.0"

# torch and transformers load only when these are first used, so that `pytest` without kedit
# tests starts fast.
_LAZY = {
    "Editor": "pytest_kedit.editors.base",
    "WeightDelta": "pytest_kedit.editors.base",
    "snapshot": "pytest_kedit.editors.base",
    "LoadedModel": "pytest_kedit.model.loading",
    "ModuleMap": "pytest_kedit.model.architectures",
    "load_model": "pytest_kedit.model.loading",
    "CaseResult": "pytest_kedit.run.harness",
    "Harness": "pytest_kedit.run.harness",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "CaseRecord",
    "CaseResult",
    "ConfigError",
    "ConflictCase",
    "DataError",
    "Edit",
    "EditRequest",
    "Editor",
    "Entity",
    "Fact",
    "Harness",
    "KeditError",
    "LoadedModel",
    "METRICS",
    "Metric",
    "ModuleMap",
    "Query",
    "Relation",
    "RoundCase",
    "SPLITS",
    "Split",
    "Suite",
    "WeightDelta",
    "assert_thresholds",
    "load_model",
    "load_suite",
    "metrics",
    "snapshot",
]
