"""RoundEdit (Table 2): an edit and its undo, e1 = (s, r, o1 -> o*) then e2 = (s, r, o* -> o1).

The test is pytest-kedit's own (pytest_kedit.suites.test_round_edit): a newer pytest-kedit brings its
changes. `kedit docs metrics` tells what each metric measures."""

from pytest_kedit.suites.test_round_edit import test_round_edit

__all__ = ["test_round_edit"]
