from __future__ import annotations

import pytest

from pytest_kedit.errors import ConfigError
from pytest_kedit.thresholds import DEFAULT_THRESHOLDS, failures, parse_thresholds


def test_defaults_are_what_a_robust_editor_should_do():
    t = parse_thresholds(DEFAULT_THRESHOLDS)
    assert {m: (x.op, x.value) for m, x in t.items()} == {
        "cs": (">=", 1.0), "cs_exp": (">=", 1.0), "cs_imp": (">=", 1.0), "tfd": ("<=", 0.5), "succ": (">=", 1.0), "fr": ("<=", 0.0)
    }


def test_later_specs_override_and_off_removes():
    t = parse_thresholds([*DEFAULT_THRESHOLDS, "tfd<=0.3", "cs_imp=off", "cm >= 0.5"])
    assert str(t["tfd"]) == "TFD <= 0.3" and "cs_imp" not in t and str(t["cm"]) == "CM >= 0.5"


@pytest.mark.parametrize("spec, message", [("csimp>=1", "unknown metric"), ("cs_imp>=x", "not a number"), ("cs_imp=1", "use >= or <="), ("cs_imp", "expected")])
def test_bad_specs_are_config_errors(spec, message):
    with pytest.raises(ConfigError, match=message):
        parse_thresholds([spec])


def test_failure_message_names_metric_value_and_evidence():
    t = parse_thresholds(DEFAULT_THRESHOLDS)
    lines = failures({"cs_exp": 1.0, "cs_imp": 0.0, "cm": 0.2}, {"cs_imp": "p(k_n)=0.012 <= p(k_o)=0.034"}, t)
    assert lines == ["CS_imp = 0: p(k_n)=0.012 <= p(k_o)=0.034 (threshold CS_imp >= 1)"]
