"""The paper's metrics as pure functions (CS, CM, TFD, Succ, D, IR, FR, JS), table means and intervals.

The public home of :mod:`pytest_kedit.benchmark.metrics`, for users' own metric tests.
"""

from pytest_kedit.benchmark.metrics import (
    DISTORTION_SCALINGS,
    bootstrap_interval,
    conflict_magnitude,
    conflict_score,
    distortion,
    failure,
    ignore_rate,
    js_divergence,
    mean_percent,
    round_success,
    single_success,
    tied_fact_damage,
)

__all__ = [
    "DISTORTION_SCALINGS",
    "bootstrap_interval",
    "conflict_magnitude",
    "conflict_score",
    "distortion",
    "failure",
    "ignore_rate",
    "js_divergence",
    "mean_percent",
    "round_success",
    "single_success",
    "tied_fact_damage",
]
