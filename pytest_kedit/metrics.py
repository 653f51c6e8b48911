"""The paper's metrics as pure functions (CS, CM, TFD, Succ, D, IR, FR, JS), the sequential-editing
metrics (efficacy and its kin, retention, locality, perplexity ratio, update norm, collapse point),
table means and intervals.

The public home of :mod:`pytest_kedit.benchmark.metrics`, for users' own metric tests.
"""

from pytest_kedit.benchmark.metrics import (
    DISTORTION_SCALINGS,
    bootstrap_interval,
    collapse_point,
    conflict_magnitude,
    conflict_score,
    distortion,
    failure,
    ignore_rate,
    js_divergence,
    locality,
    mean_percent,
    perplexity_ratio,
    preference_share,
    retention,
    round_success,
    single_success,
    tied_fact_damage,
    update_norm,
)

__all__ = [
    "DISTORTION_SCALINGS",
    "bootstrap_interval",
    "collapse_point",
    "conflict_magnitude",
    "conflict_score",
    "distortion",
    "failure",
    "ignore_rate",
    "js_divergence",
    "locality",
    "mean_percent",
    "perplexity_ratio",
    "preference_share",
    "retention",
    "round_success",
    "single_success",
    "tied_fact_damage",
    "update_norm",
]
