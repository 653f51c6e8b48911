"""Sequential editing (Table 3): a stream of edits applied to one model without restoring in between.

The test is pytest-kedit's own (pytest_kedit.suites.test_sequential): a newer pytest-kedit brings its
changes. `kedit docs metrics` tells what each metric measures."""

from pytest_kedit.suites.test_sequential import test_sequential_stream

__all__ = ["test_sequential_stream"]
