"""JSON-lines files that a process appends to one line at a time, and that are read back after the
process may have been killed in the middle of a line.

A writer writes each value and its newline in one piece, so a line is complete once its newline
is written: a last line without one is a write cut short (a torn line). :func:`read_json_lines`
leaves a torn last line out, and :func:`drop_torn_line` removes it from the file before a writer
appends again. Any other line that is not JSON is an error naming the file and the line. Blank
lines are skipped.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from pytest_kedit.errors import KeditError


class JsonLinesError(KeditError):
    """A complete line of a JSON-lines file that is not JSON."""

    def __init__(self, path: str | os.PathLike[str], line: int, reason: str):
        self.path = str(path)
        #: the line's number, from 1
        self.line = line
        #: what the JSON parser found wrong
        self.reason = reason
        super().__init__(f"{self.path}, line {line}: not valid JSON: {reason}")


def read_json_lines(path: Path) -> list[tuple[int, Any]]:
    """``(line number from 1, value)`` of every complete, non-blank line of ``path``, in file order;
    a torn last line is left out.

    Raises :class:`JsonLinesError` for a complete line that is not JSON, and ``OSError`` or
    ``UnicodeDecodeError`` when the file cannot be read as UTF-8.
    """
    raw = path.read_bytes()
    complete = raw[: raw.rfind(b"\n") + 1].decode("utf-8")  # a torn line may end inside a character
    values = []
    for number, line in enumerate(complete.split("\n")[:-1], start=1):
        if not line.strip():
            continue
        try:
            values.append((number, json.loads(line)))
        except json.JSONDecodeError as exc:
            raise JsonLinesError(path, number, exc.msg) from None
    return values


def drop_torn_line(path: Path) -> None:
    """Truncate ``path`` after its last newline: a torn last line is removed, so that the next
    line appended starts a line of its own."""
    with path.open("r+b") as file:
        data = file.read()
        if data and not data.endswith(b"\n"):
            file.truncate(data.rfind(b"\n") + 1)
