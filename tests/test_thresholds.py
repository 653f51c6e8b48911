"""Per-case thresholds: defaults from the registry, per-split overrides, one-line errors."""

from __future__ import annotations

import pytest

from pytest_kedit.benchmark.registry import METRICS, SPLITS, default_threshold_specs
from pytest_kedit.benchmark.thresholds import Threshold, failures, parse_thresholds
from pytest_kedit.errors import ConfigError


def test_the_default_thresholds_are_the_registrys_and_describe_a_robust_editor():
    thresholds = parse_thresholds([])
    assert {t.metric for t in thresholds.globals.values()} == {k for k, m in METRICS.items() if m.default_threshold}
    assert default_threshold_specs() == ("cs>=1", "cs_exp>=1", "cs_imp>=1", "tfd<=0.5", "succ>=1", "fr<=0", "es>=0.9",
                                         "ppl<=1.5")
    assert set(thresholds.for_split("reverse")) == {"cs_exp", "cs_imp"}
    assert set(thresholds.for_split("sequential")) == {"es", "ppl"}


def test_a_split_threshold_overrides_the_global_one_in_that_split_only():
    thresholds = parse_thresholds(["reverse.cs_imp>=0.5", "composite.cs_imp=off"])
    assert thresholds.for_split("reverse")["cs_imp"] == Threshold("cs_imp", ">=", 0.5)
    assert "cs_imp" not in thresholds.for_split("composite")
    assert thresholds.for_split("composite")["cs_exp"] == Threshold("cs_exp", ">=", 1.0)


def test_a_global_off_removes_the_metric_everywhere_and_a_later_global_does_not_undo_a_split_threshold():
    assert "cs_imp" not in parse_thresholds(["reverse.cs_imp>=0.5", "cs_imp=off"]).for_split("reverse")
    assert parse_thresholds(["reverse.cs_imp>=0.5", "cs_imp>=0.9"]).for_split("reverse")["cs_imp"].value == 0.5


def test_thresholds_read_back_from_their_specs():
    thresholds = parse_thresholds(["reverse.cs_imp>=0.5", "composite.tfd=off", "cm>=0.25"])
    again = parse_thresholds(thresholds.specs(), defaults=False)
    assert all(again.for_split(split) == thresholds.for_split(split) for split in SPLITS)


@pytest.mark.parametrize("spec, message", [
    ("cs>=nan", "not a finite number"),
    ("cs<=inf", "not a finite number"),
    ("cs>=x", "not a number"),
    ("bogus>=1", "unknown metric 'bogus'"),
    ("medium.cs>=1", "unknown split 'medium'"),
    ("easy.cs>=1", "split easy has no metric 'cs'"),
    ("cs=1", "use >= or <="),
    ("cs", "expected [SPLIT.]METRIC"),
])
def test_bad_threshold_specs_are_one_line_errors(spec: str, message: str):
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace(".", r"\.")):
        parse_thresholds([spec])


def test_a_failure_names_its_metric_key_and_the_evidence():
    [failure] = failures({"cs_imp": 0.0, "cm": 0.3}, {"cs_imp": "p(k_n)=0.01 <= p(k_o)=0.03"},
                         parse_thresholds([]).for_split("reverse"))
    assert failure.metric == "cs_imp"
    assert failure.message == "CS_imp = 0: p(k_n)=0.01 <= p(k_o)=0.03 (threshold CS_imp >= 1)"
