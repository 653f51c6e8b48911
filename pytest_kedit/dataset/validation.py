"""Reading the data files, and every problem in them: one validator behind the loader
(:mod:`pytest_kedit.dataset.sources`, which keeps a file's or a record's first error) and
``kedit check-data`` (:mod:`pytest_kedit.dataset.check`, which reports them all).

A problem is a :class:`Finding`. The kinds found here (:mod:`pytest_kedit.dataset.check` lists
them all): ``schema``, a file that cannot be read, is not JSON or not the expected shape, or what
the case parsers of :mod:`pytest_kedit.benchmark.cases` reject; ``placeholder`` and ``subject``,
a prompt template the subject cannot be written into
(:func:`~pytest_kedit.benchmark.cases.prompt_problem`); ``label``, an object label that is empty,
or numeric only (a warning).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pytest_kedit.benchmark.cases import Case, prompt_problem
from pytest_kedit.benchmark.registry import SPLITS
from pytest_kedit.errors import DataError

#: The keys of a record's objects whose ``label`` is an object label (``true_objects`` too).
OBJECT_FIELDS = ("object", "new_object", "true_object")
_NUMERIC = re.compile(r"[+\-]?\d[\d,.\s]*")


@dataclass(frozen=True)
class Finding:
    """One problem: where (file, record index, field path) and what."""

    file: str
    record: int | None
    field: str | None
    kind: str
    message: str
    warning: bool = False

    @classmethod
    def of(cls, error: DataError) -> Finding:
        """The ``schema`` finding of an error raised while reading or parsing."""
        return cls(error.path, error.record, error.field, "schema", error.message)

    def error(self) -> DataError:
        """The finding as the error the loader keeps in place of its file or record."""
        return DataError(self.file, self.message, record=self.record, field=self.field)

    def __str__(self) -> str:
        """``FILE:record N: field: [warning: ]message`` (the record and field parts only when known)."""
        where = self.file if self.record is None else f"{self.file}:record {self.record}"
        message = f"warning: {self.message}" if self.warning else self.message
        return ": ".join(part for part in (where, self.field, message) if part)


def read_bytes(path: Path) -> bytes:
    """The bytes of a data file; DataError (file level) when it cannot be read."""
    try:
        return path.read_bytes()
    except OSError as exc:
        raise DataError(str(path), f"cannot read: {exc.strerror}") from None


def paraphrase_file_bytes(path: Path) -> bytes:
    """The bytes of a paraphrase file; DataError (file level) when it is missing or cannot be read."""
    if not path.is_file():
        raise DataError(str(path), "missing: every relation needs its paraphrase prompts")
    return read_bytes(path)


def json_value(path: Path, raw: bytes) -> Any:
    """The JSON value of a data file's bytes; DataError (file level) when they are not valid JSON."""
    try:
        return json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(str(path), f"not valid JSON: {exc}") from None


def split_records(path: Path, raw: bytes) -> list[Any]:
    """The records of a split file's bytes; DataError (file level) unless they are a JSON list."""
    records = json_value(path, raw)
    if not isinstance(records, list):
        raise DataError(str(path), f"expected a list of cases, got {type(records).__name__}")
    return records


def paraphrases(path: Path, raw: bytes) -> tuple[dict[str, tuple[str, ...]], list[Finding]]:
    """The relations of a paraphrase file's bytes (relation id -> its paraphrase prompts) and the
    findings of every relation and prompt; DataError (file level) unless they are a JSON object.
    A relation whose value is not a non-empty list maps to no paraphrases, and a prompt that is not
    a string is left out, so that only this file reports them."""
    data, file = json_value(path, raw), str(path)
    if not isinstance(data, dict):
        raise DataError(file, f"expected an object mapping relation ids to prompt lists, got {type(data).__name__}")
    relations: dict[str, tuple[str, ...]] = {}
    findings: list[Finding] = []
    for relation, items in data.items():
        if not isinstance(items, list) or not items:
            findings.append(Finding(file, None, relation, "schema", "expected a non-empty list of prompts"))
            relations[relation] = ()
            continue
        for i, prompt in enumerate(items):
            field = f"{relation}[{i}]"
            if isinstance(prompt, str):
                findings.extend(_prompt_findings(file, None, field, prompt, None))
            else:
                findings.append(Finding(file, None, field, "schema", f"expected str, got {type(prompt).__name__}"))
        relations[relation] = tuple(p for p in items if isinstance(p, str))
    return relations, findings


def record_findings(
    file: str, index: int, split: str, record: Any, relations: Mapping[str, Sequence[str]], prompts_name: str
) -> tuple[Case | DataError, list[Finding]]:
    """The case of one record of ``split``, or the error its parser raised, and the record's
    findings: those of every prompt and object label in it, then the parser's error (its first:
    the parser stops there) unless an error among those already names its field. An error from
    the parser always comes with an error finding."""
    findings = list(_field_findings(file, index, record))
    try:
        return SPLITS[split].benchmark.parse(record, split, index, file, relations, prompts_name), findings
    except DataError as exc:
        if exc.field not in {finding.field for finding in findings if not finding.warning}:
            findings.append(Finding.of(exc))
        return exc, findings


def first_error(findings: Sequence[Finding]) -> DataError | None:
    """The first finding that is not a warning, as the loader's error; None when there is none."""
    return next((finding.error() for finding in findings if not finding.warning), None)


def _objects(value: Any, path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    """Every JSON object inside ``value`` with its field path (``edits[1]``, ``edits[1].relation``)."""
    if isinstance(value, dict):
        yield path, value
        for key, child in value.items():
            yield from _objects(child, f"{path}.{key}" if path else str(key))
    elif isinstance(value, list):
        for i, child in enumerate(value):
            yield from _objects(child, f"{path}[{i}]")


def _field_findings(file: str, index: int, record: Any) -> Iterator[Finding]:
    """The placeholder, subject and label findings of one record."""
    for path, obj in _objects(record):
        prefix = f"{path}." if path else ""
        relation, subject = obj.get("relation"), obj.get("subject")
        if isinstance(relation, dict) and isinstance(relation.get("prompt"), str):
            label = subject.get("label") if isinstance(subject, dict) else None
            yield from _prompt_findings(file, index, f"{prefix}relation.prompt", relation["prompt"],
                                        label if isinstance(label, str) and label.strip() else None)
        labelled = [(key, obj.get(key)) for key in OBJECT_FIELDS]
        if isinstance(obj.get("true_objects"), list):
            labelled += [(f"true_objects[{i}]", item) for i, item in enumerate(obj["true_objects"])]
        for key, entity in labelled:
            if isinstance(entity, dict) and isinstance(entity.get("label"), str):
                label = entity["label"]
                if not label.strip():
                    yield Finding(file, index, f"{prefix}{key}.label", "label", "is empty")
                elif _NUMERIC.fullmatch(label.strip()):
                    yield Finding(file, index, f"{prefix}{key}.label", "label", f"numeric-only label {label!r}",
                                  warning=True)


def _prompt_findings(file: str, record: int | None, field: str, prompt: str, subject: str | None) -> Iterator[Finding]:
    """The placeholder or subject finding of one prompt template (at most one)."""
    problem = prompt_problem(prompt, subject)
    if problem is not None:
        yield Finding(file, record, field, *problem)
