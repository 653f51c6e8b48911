"""``kedit check-data``: every problem of a dataset at once, where the loader stops at the first.

A check covers a folder in the upstream layout, one of its files, or ``upstream:NAME``. Each
problem is a :class:`Finding` of one of these kinds:

``schema``
    What the loader rejects (the :class:`~pytest_kedit.errors.DataError` of the parsers in
    :mod:`pytest_kedit.benchmark.cases`): an unreadable or non-JSON file, a missing or mistyped field, a
    relation without paraphrases, a case that breaks its split's rules. One per bad record (the
    parser stops at a record's first error), for every record.
``placeholder``
    A prompt without exactly one ``{}``, the slot the subject is written into: a relation's
    ``prompt`` in a record, or a paraphrase in ``conflict_prompts.json`` / ``round_prompts.json``.
``subject``
    A prompt with one ``{}`` whose ``prompt.format(subject)`` (how probes and editors fill it)
    fails or leaves the subject out, because of other braces (``{0}``, ``{name}``, ``{{}}``).
``label``
    An object label (``object``, ``new_object``, ``true_object``, ``true_objects[i]``, in the
    edits and the triples) that is empty or numeric only (digits with optional sign, spaces,
    ``,`` and ``.``): a probe of such an object scores how digits are tokenized, not an entity.
``type``
    A record's ``type`` that contradicts its file: a ConflictEdit record's must be its split
    (``coverage`` in ``coverage_edit.json``), a RoundEdit record's ``1-N@RELATION`` with N its
    number of true objects and RELATION its edit's relation id (the upstream files keep both).
``length``
    With a length limit (:class:`LengthLimit`: ``--max-tokens``, ``--model``), a case one of
    whose model inputs (a prompt filled with the subject, then an object) is longer than the
    limit; the finding names the longest of that input's prompt, subject and object
    (:func:`~pytest_kedit.dataset.input_length.overlong`).
``duplicate``
    A case that runs the same experiment as an earlier case of its file: ConflictEdit cases
    whose two edits agree in subject label, relation id and prompt, old and new object label
    (and, for composite, whose tied facts agree in subject, relation and object label); RoundEdit
    cases whose edits agree so and whose ``true_objects`` hold the same labels in any order.

A record's ``schema`` finding is left out when a ``placeholder`` or ``label`` finding already
names the same field. A numeric-only label and a duplicate are warnings (the case runs; its number
means little or counts twice); every other finding is an error.

``strict`` adds the kinds of :mod:`pytest_kedit.dataset.strict_schema` (``layout``, ``semantics``,
``paraphrases``, ``size``: the rules the built-in suites are held to) and makes every warning an
error.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from pytest_kedit.benchmark.cases import Case, ConflictCase, Edit, Fact, RoundCase
from pytest_kedit.benchmark.registry import CONFLICT_EDIT, PROMPT_FILES, SPLITS
from pytest_kedit.dataset import strict_schema, upstream
from pytest_kedit.dataset.input_length import LengthLimit, overlong
from pytest_kedit.dataset.sources import SPLIT_FILES
from pytest_kedit.errors import ConfigError, DataError

KINDS = ("schema", "placeholder", "subject", "label", "type", "length", "duplicate", "layout", "semantics", "paraphrases",
         "size")
OBJECT_FIELDS = ("object", "new_object", "true_object")
_SPLIT_OF_FILE = {name: split for split, name in SPLIT_FILES.items()}
_NUMERIC = re.compile(r"[+\-]?\d[\d,.\s]*")
_ROUND_TYPE = re.compile(r"1-(\d+)@(.+)")
# Fills prompts that have no subject at hand; no real prompt contains it.
_SENTINEL = "\0subject\0"


@dataclass(frozen=True)
class Finding:
    """One problem: where (file, record index, field path) and what."""

    file: str
    record: int | None
    field: str | None
    kind: str
    message: str
    warning: bool = False

    def __str__(self) -> str:
        """``FILE:record N: field: [warning: ]message`` (the record and field parts only when known)."""
        where = self.file if self.record is None else f"{self.file}:record {self.record}"
        message = f"warning: {self.message}" if self.warning else self.message
        return ": ".join(part for part in (where, self.field, message) if part)


def check_data(target: str, strict: bool = False, length: LengthLimit | None = None) -> list[Finding]:
    """The findings of ``target``: a folder in the upstream layout, a split or paraphrase file of
    one, or ``upstream:NAME`` (downloaded first). A split file is checked with the paraphrase file
    beside it. ``strict``: see the module docstring; a strict folder has every split file.
    ``length``: also report inputs longer than its limit. Raises ConfigError when ``target`` is
    none of these."""
    if upstream.is_upstream(target):
        folder = upstream.fetch(target)
        return _Check(strict, length).files([folder / name for name in SPLIT_FILES.values()])
    path = Path(target).expanduser()
    known = [*SPLIT_FILES.values(), *PROMPT_FILES]
    if path.is_dir():
        files = [path / name for name in known if (path / name).is_file()]
        if not files:
            raise ConfigError(f"{target}: holds none of {', '.join(known)}")
        if strict:
            files = [path / name for name in known]
        return _Check(strict, length).files(files)
    if path.is_file():
        if path.name not in known:
            raise ConfigError(f"{target}: not a dataset file; expected one named {', '.join(known)}")
        return _Check(strict, length).files([path])
    raise ConfigError(f"{target}: no such file or folder")


def failed(findings: Sequence[Finding]) -> bool:
    """Whether any finding is an error (warnings alone pass)."""
    return any(not finding.warning for finding in findings)


def summarize(findings: Sequence[Finding]) -> str:
    """Per file, the count of each kind, then the total with its errors and warnings; empty when
    there are no findings."""
    if not findings:
        return ""
    per_file: dict[str, Counter[str]] = {}
    for finding in findings:
        per_file.setdefault(finding.file, Counter())[finding.kind] += 1
    lines = ["summary:"]
    for file, counts in per_file.items():
        lines.append(f"  {file}: " + ", ".join(f"{kind} {counts[kind]}" for kind in KINDS if counts[kind]))
    warnings = sum(finding.warning for finding in findings)
    severities = f"{_plural(len(findings) - warnings, 'error')}, {_plural(warnings, 'warning')}"
    lines.append(f"{_plural(len(findings), 'finding')} in {_plural(len(per_file), 'file')}: {severities}")
    return "\n".join(lines)


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


class _Check:
    """One run of the checks: the findings so far, each paraphrase file's relations, and (strict)
    the first definition of each relation id per paraphrase file."""

    def __init__(self, strict: bool, length: LengthLimit | None = None) -> None:
        self.strict = strict
        self.length = length
        self.findings: list[Finding] = []
        self.paraphrases: dict[Path, Mapping[str, Sequence[str]]] = {}
        self.definitions: dict[str, strict_schema.RelationDefinitions] = {}

    def files(self, paths: Sequence[Path]) -> list[Finding]:
        """Every file of ``paths`` in order; each paraphrase file once, before the first split using it."""
        for path in paths:
            if path.name in PROMPT_FILES:
                self.prompts_of(path)
                continue
            split = _SPLIT_OF_FILE[path.name]
            prompts_name = SPLITS[split].benchmark.prompts_file
            self.split(path, split, self.prompts_of(path.parent / prompts_name), prompts_name)
        if self.strict:
            return [replace(finding, warning=False) for finding in self.findings]
        return self.findings

    def prompts_of(self, path: Path) -> Mapping[str, Sequence[str]]:
        if path not in self.paraphrases:
            self.paraphrases[path] = self.prompts(path)
        return self.paraphrases[path]

    def prompts(self, path: Path) -> Mapping[str, Sequence[str]]:
        """Add the findings of a paraphrase file; return its relations for parsing the records
        (a relation whose list is broken maps to no paraphrases, so only this file reports it)."""
        file, findings = str(path), self.findings
        if not path.is_file():
            findings.append(Finding(file, None, None, "schema", "missing: every relation needs its paraphrase prompts"))
            return _AnyRelation()
        try:
            data = _read_json(path)
        except DataError as exc:
            findings.append(_schema(exc))
            return _AnyRelation()
        if not isinstance(data, dict):
            message = f"expected an object mapping relation ids to prompt lists, got {type(data).__name__}"
            findings.append(Finding(file, None, None, "schema", message))
            return _AnyRelation()
        relations: dict[str, tuple[str, ...]] = {}
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
            if self.strict:
                problems = strict_schema.paraphrase_problems(relation, list(relations[relation]))
                findings.extend(Finding(file, None, field, kind, message) for kind, field, message in problems)
        return relations

    def split(self, path: Path, split: str, relations: Mapping[str, Sequence[str]], prompts_name: str) -> None:
        """Add the findings of one split file."""
        file = str(path)
        if self.strict and not path.is_file():
            self.findings.append(Finding(file, None, None, "size", "missing: a strict suite has every split file"))
            return
        try:
            records = _read_json(path)
        except DataError as exc:
            self.findings.append(_schema(exc))
            return
        if not isinstance(records, list):
            message = f"expected a list of cases, got {type(records).__name__}"
            self.findings.append(Finding(file, None, None, "schema", message))
            return
        parse = SPLITS[split].benchmark.parse
        definitions = self.definitions.setdefault(prompts_name, strict_schema.RelationDefinitions())
        first_of: dict[tuple[Any, ...], int] = {}
        cases = 0
        for index, record in enumerate(records):
            own = [*_record_findings(file, index, record), *_type_findings(file, index, split, record)]
            self.findings.extend(own)
            try:
                case = parse(record, split, index, file, relations, prompts_name)
            except DataError as exc:
                if exc.field not in {f.field for f in own}:
                    self.findings.append(_schema(exc))
                continue
            cases += 1
            if self.length is not None:
                self.findings.extend(_length_findings(file, index, case, prompts_name, self.length))
            key = _case_key(case)
            if key in first_of:
                field = "edits" if isinstance(case, ConflictCase) else "edit"
                self.findings.append(Finding(file, index, field, "duplicate", f"same case as record {first_of[key]}",
                                             warning=True))
            else:
                first_of[key] = index
            if self.strict:
                where = f"{path.name} record {index}"
                # a contradicting type is a finding of its own kind, strict or not
                problems = [p for p in strict_schema.record_problems(split, record) if p[:2] != ("semantics", "type")]
                problems += [("semantics", field, message) for field, message in definitions.conflicts(record, where)]
                self.findings.extend(Finding(file, index, field, kind, message) for kind, field, message in problems)
        too_small = strict_schema.size_problem(cases) if self.strict else None
        if too_small:
            self.findings.append(Finding(file, None, None, "size", too_small))


class _AnyRelation(Mapping[str, Sequence[str]]):
    """Paraphrases for a missing or unreadable paraphrase file: every relation, none of its
    paraphrases. The file is one finding; the records are still checked for everything else."""

    def __getitem__(self, relation: str) -> Sequence[str]:
        return ()

    def __contains__(self, relation: object) -> bool:
        return True

    def __iter__(self) -> Iterator[str]:
        return iter(())

    def __len__(self) -> int:
        return 0


def _read_json(path: Path) -> Any:
    """The parsed file; DataError (file level) when it cannot be read or parsed."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise DataError(str(path), f"cannot read: {exc.strerror}") from None
    try:
        return json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(str(path), f"not valid JSON: {exc}") from None


def _schema(error: DataError) -> Finding:
    return Finding(error.path, error.record, error.field, "schema", error.message)


def _objects(value: Any, path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    """Every JSON object inside ``value`` with its field path (``edits[1]``, ``edits[1].relation``)."""
    if isinstance(value, dict):
        yield path, value
        for key, child in value.items():
            yield from _objects(child, f"{path}.{key}" if path else str(key))
    elif isinstance(value, list):
        for i, child in enumerate(value):
            yield from _objects(child, f"{path}[{i}]")


def _record_findings(file: str, index: int, record: Any) -> Iterator[Finding]:
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


def _length_findings(file: str, index: int, case: Case, prompts_name: str, limit: LengthLimit) -> Iterator[Finding]:
    """The length finding of one parsed case (at most one)."""
    found = overlong(case, limit.length, limit.limit, prompts_name)
    if found is not None:
        yield Finding(file, index, found.field, "length", found.message(limit.name, limit.unit))


def _type_findings(file: str, index: int, split: str, record: Any) -> Iterator[Finding]:
    """The ``type`` finding of one record (at most one); none when the record has no ``type``."""
    if not isinstance(record, dict) or "type" not in record:
        return
    value, name = record["type"], Path(file).name
    if SPLITS[split].benchmark is CONFLICT_EDIT:
        if value != split:
            yield Finding(file, index, "type", "type", f"{value!r} contradicts {name}: its records have type {split!r}")
        return
    edit = record.get("edit")
    relation = edit.get("relation") if isinstance(edit, dict) else None
    relation_id = relation.get("id") if isinstance(relation, dict) else None
    objects = record.get("true_objects")
    match = _ROUND_TYPE.fullmatch(value) if isinstance(value, str) else None
    if match is None:
        count = len(objects) if isinstance(objects, list) else "N"
        expected = f"1-{count}@{relation_id if isinstance(relation_id, str) else 'RELATION'}"
        yield Finding(file, index, "type", "type", f"{value!r} contradicts {name}: this record's type is {expected!r}")
    elif isinstance(objects, list) and int(match[1]) != len(objects):
        yield Finding(file, index, "type", "type", f"{value!r} says {match[1]} true objects, the record has {len(objects)}")
    elif isinstance(relation_id, str) and match[2] != relation_id:
        yield Finding(file, index, "type", "type", f"{value!r} says relation {match[2]}, the edit's is {relation_id}")


def _prompt_findings(file: str, record: int | None, field: str, prompt: str, subject: str | None) -> Iterator[Finding]:
    """The placeholder or subject finding of one prompt template (at most one)."""
    slots = prompt.count("{}")
    if slots == 0:
        hint = f" (the subject {subject!r} is written out: put '{{}}' in its place)" if subject and subject in prompt else ""
        yield Finding(file, record, field, "placeholder", f"has no '{{}}' for the subject: {prompt!r}{hint}")
        return
    if slots > 1:
        yield Finding(file, record, field, "placeholder", f"has {slots} '{{}}', exactly one takes the subject: {prompt!r}")
        return
    filler = subject or _SENTINEL
    try:
        filled = prompt.format(filler)
    except (IndexError, KeyError, ValueError) as exc:
        problem = f"prompt.format(subject) fails ({type(exc).__name__}: {exc})"
        yield Finding(file, record, field, "subject", f"{problem}; write literal braces as '{{{{' and '}}}}': {prompt!r}")
        return
    if filler not in filled:
        yield Finding(file, record, field, "subject", f"prompt.format(subject) leaves the subject out: {prompt!r}")


def _fact_key(fact: Fact) -> tuple[str, ...]:
    return (fact.subject.label, fact.relation.id, fact.relation.prompt, fact.object.label)


def _edit_key(edit: Edit) -> tuple[str, ...]:
    return (edit.subject.label, edit.relation.id, edit.relation.prompt, edit.old.label, edit.new.label)


def _case_key(case: ConflictCase | RoundCase) -> tuple[Any, ...]:
    """What makes two cases of a file the same experiment (see the module docstring)."""
    if isinstance(case, ConflictCase):
        return (tuple(_edit_key(e) for e in case.edits), _fact_key(case.tied_fact) if case.tied_fact else None)
    return (_edit_key(case.edit), tuple(sorted(o.label for o in case.true_objects)))
