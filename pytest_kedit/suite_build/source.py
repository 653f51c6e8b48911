"""The source split ``kedit build-suite`` rebuilds: its raw records (written back verbatim), their
parsed entries, its fingerprint and its file's JSON layout."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pytest_kedit.dataset.sources import SPLIT_FILES, Entry, load_suite
from pytest_kedit.dataset.validation import read_bytes, split_records
from pytest_kedit.errors import DataError, KeditError

#: How a split file may be laid out: ``json.dumps`` defaults (the upstream files) or indented
#: UTF-8 with a final newline (the built-in suites). An output file takes its source file's.
JSON_LAYOUTS: dict[str, Callable[[Any], str]] = {
    "compact": json.dumps,
    "indented": lambda value: json.dumps(value, ensure_ascii=False, indent=2) + "\n",
}


@dataclass
class SourceSplit:
    """One split of the source: its raw records (written verbatim), their parsed entries, and the
    file's JSON layout (a key of :data:`JSON_LAYOUTS`)."""

    split: str
    records: list[Any]
    entries: list[Entry]
    fingerprint: str
    layout: str


def read_source(folder: Path, split: str) -> SourceSplit:
    """The raw records and parsed entries of one split; KeditError when its file is missing or unreadable."""
    path = folder / SPLIT_FILES[split]
    if not path.is_file():
        raise KeditError(f"--from: {folder} has no {SPLIT_FILES[split]} (split {split!r})")
    suite = load_suite(str(folder), [split])
    entries = suite.splits[split]
    if len(entries) == 1 and isinstance(entries[0], DataError) and entries[0].record is None:
        raise entries[0]
    raw = read_bytes(path)
    records = split_records(path, raw)
    layout = next((name for name, dump in JSON_LAYOUTS.items() if dump(records).encode() == raw), "compact")
    return SourceSplit(split, records, entries, suite.fingerprint, layout)
