"""How what a process that runs tests produces reaches the controller, both ends in one place.

Under pytest-xdist the tests run in worker processes, and the controller sees only their test
reports and, once per worker when it finishes, its ``workeroutput``. So:

- a case's record (a JSON line) and the provenance of the process that ran it (JSON) travel in
  the test report's ``user_properties`` (:func:`pack_case`, :func:`unpack_case`); the controller
  replaces the record there by its JUnit properties (:func:`~pytest_kedit.run.junit.junit_properties`)
  before pytest's junitxml writes them, and drops the provenance;
- the process's own facts (model fingerprint, hparams, statistics, load time) travel once, in
  ``workeroutput`` (:func:`pack_process`, :func:`unpack_process`);
- a usage error that stops a worker travels as its ``shouldstop`` line, which the controller
  recognises by the prefix every kedit usage error starts with (:func:`usage_error`,
  :func:`worker_usage_error`).

Without pytest-xdist one process is both ends and takes the same path. No pytest, no torch.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, MutableMapping, Sequence
from typing import Any

from pytest_kedit.results.record import CaseRecord
from pytest_kedit.run.junit import junit_properties

#: The user property that carries a case's record.
RECORD_PROPERTY = "kedit"
#: The user property that carries the provenance of the process that ran the case.
PROVENANCE_PROPERTY = "kedit_provenance"
#: The user property of a line for the user that arose in the process that ran the test
#: (:mod:`pytest_kedit.run.notices`).
NOTICE_PROPERTY = "kedit_notice"
#: The key of a worker's process facts in pytest-xdist's ``workeroutput``.
PROCESS_OUTPUT = "kedit_process"
#: The key under which pytest-xdist hands the controller the line a worker stopped its session with.
SHOULDSTOP_OUTPUT = "shouldstop"
#: What every kedit usage error starts with.
USAGE_ERROR_PREFIX = "kedit: "

#: A user property of a test report: (name, value).
Property = tuple[str, object]


def pack_case(record: CaseRecord, provenance: Mapping[str, Any] | None) -> list[Property]:
    """The user properties that carry ``record`` and, when given, ``provenance`` to the controller."""
    packed: list[Property] = [(RECORD_PROPERTY, record.to_json())]
    if provenance is not None:
        packed.append((PROVENANCE_PROPERTY, json.dumps(provenance)))
    return packed


def unpack_case(properties: Sequence[Property]) -> tuple[CaseRecord | None, dict[str, Any] | None, list[Property]]:
    """What :func:`pack_case` put in ``properties``: the record and the provenance (the last of
    each when there are several, None when there is none), and ``properties`` without them, the
    record replaced in place by its :func:`~pytest_kedit.run.junit.junit_properties` and every
    other property kept in its order."""
    last = {name: position for position, (name, _) in enumerate(properties)}
    record = CaseRecord.from_json(str(properties[last[RECORD_PROPERTY]][1])) if RECORD_PROPERTY in last else None
    provenance = json.loads(str(properties[last[PROVENANCE_PROPERTY]][1])) if PROVENANCE_PROPERTY in last else None
    rest: list[Property] = []
    for position, (name, value) in enumerate(properties):
        if record is not None and position == last[RECORD_PROPERTY]:
            rest.extend(junit_properties(record))
        elif name not in (RECORD_PROPERTY, PROVENANCE_PROPERTY):
            rest.append((name, value))
    return record, provenance, rest


def pack_notices(lines: Sequence[str]) -> list[Property]:
    """The user properties that carry ``lines`` (:mod:`pytest_kedit.run.notices`) to the controller."""
    return [(NOTICE_PROPERTY, line) for line in lines]


def unpack_notices(properties: Sequence[Property]) -> tuple[list[str], list[Property]]:
    """The lines :func:`pack_notices` put in ``properties``, and ``properties`` without them."""
    lines = [str(value) for name, value in properties if name == NOTICE_PROPERTY]
    return lines, [(name, value) for name, value in properties if name != NOTICE_PROPERTY]


def pack_process(workeroutput: MutableMapping[str, Any], info: dict[str, Any] | None) -> None:
    """Put a worker's process facts (None: it loaded no model) in its ``workeroutput``."""
    workeroutput[PROCESS_OUTPUT] = info


def unpack_process(workeroutput: Mapping[str, Any]) -> dict[str, Any] | None:
    """The process facts a finished worker sent (:func:`pack_process`); None when it sent none."""
    info: dict[str, Any] | None = workeroutput.get(PROCESS_OUTPUT)
    return info


def usage_error(error: object) -> str:
    """The one line of a kedit usage error: ``kedit: `` and ``error``."""
    return f"{USAGE_ERROR_PREFIX}{error}"


def worker_usage_error(workeroutput: Mapping[str, Any]) -> str | None:
    """The :func:`usage_error` line a finished worker stopped its session with; None when it
    stopped for another reason or did not stop."""
    line = str(workeroutput.get(SHOULDSTOP_OUTPUT) or "")
    return line if line.startswith(USAGE_ERROR_PREFIX) else None
