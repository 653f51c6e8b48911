"""A complete :class:`~pytest_kedit.results.summary.RunSummary` for tests: every field set, the ones a
test cares about given by keyword."""

from __future__ import annotations

from typing import Any

from pytest_kedit.benchmark.registry import SPLITS
from pytest_kedit.benchmark.thresholds import parse_thresholds
from pytest_kedit.results.summary import RunData, RunSummary


def run_summary(**fields: Any) -> RunSummary:
    """A finished run of model ``m`` × ``ft`` on every split, without thresholds, with ``fields``
    changed (``thresholds`` may be given as specs)."""
    if isinstance(fields.get("thresholds"), list):
        fields["thresholds"] = parse_thresholds(fields["thresholds"], defaults=False)
    defaults: dict[str, Any] = dict(
        model="m", method="ft", hparams_file=None, device="auto", dtype="auto", splits=tuple(SPLITS), limit=None,
        sample=None, shard=None, seed=0, distortion_scaling="paper", protocol="paper",
        thresholds=parse_thresholds([], defaults=False), hparams={}, model_source=None, model_fingerprint="f",
        editor_fingerprint=None, probe_version=2, statistics={}, data=RunData("builtin", "abc", {}), versions={"pytest_kedit": "0.1.0"},
        complete=True, cases_expected=0, cases_done=0, outcomes={}, timings={},
    )
    return RunSummary(**{**defaults, **fields})
