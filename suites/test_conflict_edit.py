"""ConflictEdit (Table 1): two logically linked edits, e1 then e2, on one model.

The test is pytest-kedit's own (pytest_kedit.suites.test_conflict_edit): a newer pytest-kedit brings its
changes. `kedit docs metrics` tells what each metric measures."""

from pytest_kedit.suites.test_conflict_edit import test_conflict_edit

__all__ = ["test_conflict_edit"]
