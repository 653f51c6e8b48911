"""The phase timer: seconds summed by phase, bracketed by the clock read around the blocks."""

from __future__ import annotations

import time

import pytest

from pytest_kedit.model.timing import PhaseTimer


def test_given_phases_start_at_zero_in_order_and_others_appear_when_their_block_ends() -> None:
    timer = PhaseTimer(["edit", "probe"])
    assert timer.seconds == {"edit": 0.0, "probe": 0.0}
    with timer("restore"):
        assert "restore" not in timer.seconds
    assert list(timer.seconds) == ["edit", "probe", "restore"]


def test_a_phase_holds_the_sum_of_its_blocks_within_the_clock_around_them() -> None:
    timer = PhaseTimer()
    before = time.perf_counter()
    with timer("probe"):
        sum(range(1000))
    first = timer.seconds["probe"]
    with timer("edit"):
        pass
    with timer("probe"):
        sum(range(1000))
    after = time.perf_counter()
    assert 0.0 < first < timer.seconds["probe"]
    assert timer.seconds["probe"] + timer.seconds["edit"] <= after - before


def test_a_block_left_by_an_exception_counts_and_the_exception_goes_on() -> None:
    timer = PhaseTimer()
    with pytest.raises(KeyError), timer("edit"):
        raise KeyError("layer")
    assert list(timer.seconds) == ["edit"] and timer.seconds["edit"] >= 0.0
