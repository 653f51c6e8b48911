"""pytest-kedit: the knowledge-editing pitfalls benchmark (ConflictEdit, RoundEdit) as a pytest plugin.

The public API: the case types, the Editor interface for new methods, the harness that runs a
case, and the pure metric functions (``pytest_kedit.metrics``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from . import metrics
from .cases import ConflictCase, Edit, EditRequest, Entity, Fact, Relation, RoundCase
from .datasets import Suite, load_suite
from .errors import ConfigError, DataError, KeditError
from .session import CaseOutcome, assert_thresholds

if TYPE_CHECKING:
    from .editors.base import Editor, WeightDelta, snapshot
    from .models import LoadedModel, ModuleMap, load_model
    from .protocols import CaseResult, Harness

__version__ = "0.1.0"

# torch and transformers load only when these are first used, so that `pytest` without kedit
# tests starts fast.
_LAZY = {
    "Editor": "editors.base",
    "WeightDelta": "editors.base",
    "snapshot": "editors.base",
    "LoadedModel": "models",
    "ModuleMap": "models",
    "load_model": "models",
    "CaseResult": "protocols",
    "Harness": "protocols",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "CaseOutcome",
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
    "ModuleMap",
    "Relation",
    "RoundCase",
    "Suite",
    "WeightDelta",
    "assert_thresholds",
    "load_model",
    "load_suite",
    "metrics",
    "snapshot",
]
