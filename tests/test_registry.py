"""The registry of splits and metrics."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pytest_kedit.benchmark.registry import BENCHMARKS, CONFLICT_EDIT, METRICS, ROUND_EDIT, SPLITS, splits_of, table_columns
from pytest_kedit.benchmark.thresholds import parse_thresholds
from pytest_kedit.ci.gates import parse_gate
from pytest_kedit.dataset.sources import load_suite
from pytest_kedit.errors import ConfigError
from pytest_kedit.suite_build.builder import check_request

KNOWN = "choose from coverage, reverse, composite, easy, hard, sequential"


def test_every_metric_is_produced_by_a_split_and_every_split_metric_is_registered():
    produced = {metric for split in SPLITS.values() for metric in split.metrics}
    assert produced == set(METRICS)


def test_every_split_belongs_to_exactly_one_benchmark():
    assert sorted(name for benchmark in BENCHMARKS for name in splits_of(benchmark)) == sorted(SPLITS)


def test_the_papers_columns_come_in_the_papers_order():
    """Table 1 and Table 2 hold the paper's columns in its order (a metric added later gets a
    column of its own among them)."""
    paper = {
        CONFLICT_EDIT: ["Single Succ", "Coverage CS", "Coverage CM", "Reverse CS_exp", "Reverse CS_imp", "Reverse CM",
                        "Composite CS_exp", "Composite CS_imp", "Composite CM", "Composite TFD"],
        ROUND_EDIT: ["EASY Succ", "EASY D", "EASY IR", "EASY FR", "HARD Succ", "HARD D", "HARD IR", "HARD FR"],
    }
    for benchmark, headers in paper.items():
        columns = [header for _, _, header in table_columns(benchmark)]
        assert [header for header in columns if header in headers] == headers


def test_each_split_metric_has_one_column():
    columns = [(split, metric) for benchmark in BENCHMARKS for split, metric, _ in table_columns(benchmark)]
    assert sorted(columns) == sorted((name, metric) for name, split in SPLITS.items() for metric in split.metrics)


def test_worse_by_follows_the_direction():
    assert METRICS["cs"].worse_by(1, 0) == 1 and METRICS["cs"].worse_by(0, 1) == -1
    assert METRICS["d"].worse_by(0.25, 0.5) == 0.25 and METRICS["d"].worse_by(0.5, 0.25) == -0.25
    assert math.isnan(METRICS["tfd"].worse_by(math.nan, 0.5))


@given(st.sampled_from(list(METRICS)), st.floats(-10, 10), st.floats(-10, 10))
def test_worse_by_is_antisymmetric_and_zero_when_nothing_moved(metric: str, a: float, b: float):
    assert METRICS[metric].worse_by(a, b) == -METRICS[metric].worse_by(b, a)
    assert METRICS[metric].worse_by(a, a) == 0
    moved_up = METRICS[metric].worse_by(a, a + abs(b) + 1)
    assert (moved_up < 0) == (METRICS[metric].better == "higher")


@pytest.mark.parametrize("name_split, where", [
    (lambda split: load_suite(None, ["reverse", split]), "--kedit-split"),
    (lambda split: parse_thresholds([f"{split}.cs>=1"]), "threshold 'medium.cs>=1'"),
    (lambda split: parse_gate(f"{split}.cs>=1"), "--kedit-gate 'medium.cs>=1'"),
    (lambda split: check_request("builtin", Path("out"), ["reverse", split]), "--splits"),
], ids=["data", "threshold", "gate", "build-suite"])
def test_every_place_that_names_splits_says_an_unknown_one_the_same_way(name_split: Callable[[str], object], where: str):
    with pytest.raises(ConfigError) as caught:
        name_split("medium")
    assert str(caught.value) == f"{where}: unknown split 'medium'; {KNOWN}"


@pytest.mark.parametrize("name_metric, where", [
    (lambda metric: parse_thresholds([f"easy.{metric}>=1"]), "threshold 'easy.cs>=1'"),
    (lambda metric: parse_gate(f"easy.{metric}>=1"), "--kedit-gate 'easy.cs>=1'"),
], ids=["threshold", "gate"])
def test_a_metric_the_split_does_not_have_is_said_the_same_way(name_metric: Callable[[str], object], where: str):
    with pytest.raises(ConfigError) as caught:
        name_metric("cs")
    assert str(caught.value) == f"{where}: split easy has no metric 'cs'; it has succ, d, ir, fr"


def test_no_split_at_all_is_an_error_of_its_own():
    with pytest.raises(ConfigError, match=f"^--splits: no split given; {KNOWN}$"):
        check_request("builtin", Path("out"), [])
