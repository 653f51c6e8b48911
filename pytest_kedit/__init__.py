"""pytest-kedit: the knowledge-editing pitfalls benchmark (ConflictEdit, RoundEdit) as a pytest plugin.

The public API: the case types, the Editor interface for new methods, the harness that runs a
case, the case record, the registry of splits and metrics, and the pure metric functions
(``pytest_kedit.metrics``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from . import metrics
from .cases import ConflictCase, Edit, EditRequest, Entity, Fact, Query, Relation, RoundCase
from .datasets import Suite, load_suite
from .errors import ConfigError, DataError, KeditError
from .record import CaseRecord
from .registry import METRICS, SPLITS, Metric, Split
from .session import assert_thresholds

if TYPE_CHECKING:
    from .architectures import ModuleMap
    from .editors.base import Editor, WeightDelta, snapshot
    from .harness import CaseResult, Harness
    from .models import LoadedModel, load_model

__version__ = "0.1.0"

# torch and transformers load only when these are first used, so that `pytest` without kedit
# tests starts fast.
_LAZY = {
    "Editor": "editors.base",
    "WeightDelta": "editors.base",
    "snapshot": "editors.base",
    "LoadedModel": "models",
    "ModuleMap": "architectures",
    "load_model": "models",
    "CaseResult": "harness",
    "Harness": "harness",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
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
