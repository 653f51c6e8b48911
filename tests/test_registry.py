"""The registry of splits and metrics."""

from __future__ import annotations

from pytest_kedit.benchmark.registry import BENCHMARKS, CONFLICT_EDIT, METRICS, ROUND_EDIT, SPLITS, splits_of, table_columns


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


def test_direction_decides_what_improves():
    assert METRICS["cs"].improves(1, 0) and not METRICS["cs"].improves(0, 1)
    assert METRICS["d"].improves(0.1, 0.2) and not METRICS["d"].improves(0.2, 0.2)
