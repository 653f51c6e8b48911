"""pytest-kedit: the knowledge-editing pitfalls benchmark (ConflictEdit, RoundEdit) as a pytest plugin.

The public API: the case types, the Editor interface for new methods, the harness that runs a
case, the case record, the registry of splits and metrics, and the pure metric functions
(``pytest_kedit.benchmark.metrics``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pytest_kedit import metrics
    from pytest_kedit.benchmark.cases import (
        ConflictCase,
        Edit,
        EditRequest,
        Entity,
        Fact,
        Query,
        Relation,
        RoundCase,
        StreamCase,
    )
    from pytest_kedit.benchmark.registry import METRICS, SPLITS, Metric, Split
    from pytest_kedit.dataset.sources import Suite, load_suite
    from pytest_kedit.editors.base import Editor, WeightDelta, snapshot
    from pytest_kedit.errors import ConfigError, DataError, KeditError
    from pytest_kedit.model.architectures import ModuleMap
    from pytest_kedit.model.loading import LoadedModel, load_model
    from pytest_kedit.results.record import CaseRecord
    from pytest_kedit.run.harness import CaseResult, Harness
    from pytest_kedit.run.session import assert_thresholds

__version__ = "0.1.0"

# Every name is imported when first used: pytest imports this package on every run (the plugin
# is in it), and a run without kedit tests must not pay for numpy, scipy, torch or transformers.
_LAZY = {
    "metrics": "pytest_kedit.metrics",
    **dict.fromkeys(("ConflictCase", "Edit", "EditRequest", "Entity", "Fact", "Query", "Relation", "RoundCase",
                     "StreamCase"), "pytest_kedit.benchmark.cases"),
    **dict.fromkeys(("METRICS", "SPLITS", "Metric", "Split"), "pytest_kedit.benchmark.registry"),
    **dict.fromkeys(("Suite", "load_suite"), "pytest_kedit.dataset.sources"),
    **dict.fromkeys(("Editor", "WeightDelta", "snapshot"), "pytest_kedit.editors.base"),
    **dict.fromkeys(("ConfigError", "DataError", "KeditError"), "pytest_kedit.errors"),
    "ModuleMap": "pytest_kedit.model.architectures",
    **dict.fromkeys(("LoadedModel", "load_model"), "pytest_kedit.model.loading"),
    "CaseRecord": "pytest_kedit.results.record",
    **dict.fromkeys(("CaseResult", "Harness"), "pytest_kedit.run.harness"),
    "assert_thresholds": "pytest_kedit.run.session",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        module = importlib.import_module(_LAZY[name])
        return module if module.__name__ == f"{__name__}.{name}" else getattr(module, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})


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
    "StreamCase",
    "Suite",
    "WeightDelta",
    "assert_thresholds",
    "load_model",
    "load_suite",
    "metrics",
    "snapshot",
]
