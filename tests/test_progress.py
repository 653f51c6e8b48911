"""Progress bars: in place on a terminal, a few lines in a log."""

from __future__ import annotations

import io

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pytest_kedit.storage import progress
from pytest_kedit.storage.progress import progress_bar


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def drawn_lines(file: io.StringIO) -> int:
    """How many times the bar drew itself (tqdm starts every drawing with a carriage return)."""
    return file.getvalue().count("\r")


@settings(max_examples=30)
@given(total=st.integers(1, 5000), steps=st.lists(st.integers(1, 50), max_size=300))
def test_in_a_log_a_bar_draws_its_first_and_last_lines_and_at_most_one_per_tenth(total: int, steps: list[int]) -> None:
    log = io.StringIO()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(progress, "LOG_INTERVAL", 0.0)  # time never holds a line back: the share alone paces it
        with progress_bar(total, file=log, desc="x") as bar:
            for step in steps:
                bar.update(min(step, total - bar.n))  # work never runs past its total
    assert 2 <= drawn_lines(log) <= 2 + 10


def test_in_a_log_a_bar_waits_a_minute_between_lines_whatever_the_caller_asks() -> None:
    log = io.StringIO()
    with progress_bar(1000, file=log, mininterval=0, miniters=1) as bar:
        for _ in range(1000):
            bar.update(1)
    assert drawn_lines(log) == 2  # the first and the last: no minute passed


def test_on_a_terminal_the_caller_paces_the_bar() -> None:
    terminal = Terminal()
    with progress_bar(100, file=terminal, mininterval=0, miniters=1) as bar:
        for _ in range(100):
            bar.update(1)
    assert drawn_lines(terminal) > 100
