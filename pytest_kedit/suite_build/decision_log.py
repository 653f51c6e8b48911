"""A resumable log of decisions: JSON lines appended as they are made, after a header line.

The header names everything the decisions depend on (model, data, parameters). Reopening the log
with a different header is an error, so decisions of two set-ups never mix; reopening it with the
same header returns the decisions already made, so an interrupted run resumes where it stopped.
A line torn by an interruption (:mod:`pytest_kedit.storage.jsonl`) is cut off and decided again.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from pytest_kedit.errors import KeditError
from pytest_kedit.storage.jsonl import JsonLinesError, drop_torn_line, read_json_lines

#: How to get past a bad line of a checkpoint.
_REDECIDE = "delete the line to decide it again"


class DecisionLog:
    """The decisions of one job, keyed by ``decision["index"]``, in the JSON-lines file ``path``."""

    def __init__(self, path: Path, header: Mapping[str, Any]) -> None:
        self.path = path
        self.header = dict(header)

    def open(self) -> dict[int, dict[str, Any]]:
        """The decisions already made, by index; creates the file (header only) when absent.

        Raises KeditError when the file was written under another header, or a line is not a
        decision.
        """
        if not self.path.exists():
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._write_lines([{"header": self.header}])
            return {}
        drop_torn_line(self.path)
        try:
            lines = read_json_lines(self.path)
        except JsonLinesError as exc:
            raise KeditError(f"{exc.path}, line {exc.line}: not JSON ({exc.reason}); {_REDECIDE}") from None
        if not lines:
            raise KeditError(f"{self.path}: empty checkpoint (no header line); delete it to start over")
        (_, header), *rest = lines
        self._check_header(header.get("header") if isinstance(header, dict) else None)
        decisions: dict[int, dict[str, Any]] = {}
        for number, decision in rest:
            if not isinstance(decision, dict):
                raise KeditError(f"{self.path}, line {number}: expected a JSON object; {_REDECIDE}")
            if not isinstance(decision.get("index"), int):
                raise KeditError(f"{self.path}, line {number}: no integer 'index'; {_REDECIDE}")
            decisions[decision["index"]] = decision
        return decisions

    def append(self, decisions: Sequence[Mapping[str, Any]]) -> None:
        """Append decisions, flushed to disk before returning."""
        self._write_lines(decisions)

    def _write_lines(self, values: Sequence[Mapping[str, Any]]) -> None:
        data = "".join(json.dumps(value, ensure_ascii=False) + "\n" for value in values)
        with self.path.open("a", encoding="utf-8") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())

    def _check_header(self, found: Any) -> None:
        if not isinstance(found, dict):
            raise KeditError(f"{self.path}, line 1: not a checkpoint header; delete the file to start over")
        for key, expected in self.header.items():
            if found.get(key) != expected:
                raise KeditError(
                    f"{self.path} was written with {key} {found.get(key)!r}, this run has {expected!r}; "
                    f"write to another folder, or delete {self.path} to decide again"
                )

