"""Which tests are the benchmark's cases, known without importing the benchmark: pytest asks on
every run, also one without kedit cases.

- A suite's test asks for a case by one of :data:`CASE_FIXTURES` (``conflict_case``,
  ``round_case``, ``stream_case``), which the plugin parametrizes with the cases of that benchmark's splits.
- A case's test has the case id as its parameter id (``reverse-0042``; ``reverse-invalid`` for a
  file that could not be read), which is all pytest-xdist's controller sees of it.
- When the run cannot start (a bad option, data that cannot be read), a case argument gets one
  test, :data:`OPTIONS_ERROR_ID`, so that the process which can stop the session (the
  controller) learns that it has kedit tests and stops it with the usage error.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

#: The argument a suite's test asks for a stream case by (one long test: the plugin runs streams first).
STREAM_FIXTURE = "stream_case"
#: The argument a suite's test asks for a case by -> the benchmark (``Benchmark.name``) whose
#: splits' cases it is parametrized with.
CASE_FIXTURES = {"conflict_case": "ConflictEdit", "round_case": "RoundEdit", STREAM_FIXTURE: "Sequential"}
#: The parameter id of the one test a case argument gets when the run cannot start.
OPTIONS_ERROR_ID = "kedit-options-error"

#: The shape of a case's parameter id at the end of a node id; the first group must be a split.
_CASE_TEST = re.compile(r"\[([a-z]+)-(\d+|invalid)\]$")


def count_cases(nodeids: Iterable[str]) -> int:
    """How many of the tests are benchmark cases: their parameter id is a case id of a split of
    the registry. The registry (and with it numpy) is imported only when an id has that shape."""
    count = 0
    for nodeid in nodeids:
        match = _CASE_TEST.search(nodeid)
        if match:
            from pytest_kedit.benchmark.registry import SPLITS

            count += match[1] in SPLITS
    return count


def has_kedit_tests(nodeids: Iterable[str]) -> bool:
    """Whether the tests include a benchmark case or the test of :data:`OPTIONS_ERROR_ID`."""
    ids = list(nodeids)
    return any(nodeid.endswith(f"[{OPTIONS_ERROR_ID}]") for nodeid in ids) or count_cases(ids) > 0
