"""``kedit check-data``: every problem of a dataset at once, where the loader stops at the first.

A check covers a folder in the upstream layout, one of its files, or ``upstream:NAME``. Each
problem is a :class:`~pytest_kedit.dataset.validation.Finding`. The first four kinds come from
the validator the loader uses (:mod:`pytest_kedit.dataset.validation`), which refuses a file or
record for the first error among them; the others only ``kedit check-data`` looks for:

``schema``
    An unreadable or non-JSON file, or one of the wrong shape; what the parsers in
    :mod:`pytest_kedit.benchmark.cases` reject: a missing or mistyped field, a relation without
    paraphrases, a case that breaks its split's rules. One per bad record (the parser stops at a
    record's first error), for every record.
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
    A record's ``type`` that contradicts its file: a ConflictEdit or sequential record's must be
    its split (``coverage`` in ``coverage_edit.json``), a RoundEdit record's ``1-N@RELATION`` with
    N its number of true objects and RELATION its edit's relation id (the upstream files keep both).
``length``
    With a length limit (:class:`LengthLimit`: ``--max-tokens``, ``--model``), a case one of
    whose model inputs (a prompt filled with the subject, then an object) is longer than the
    limit; the finding names the longest of that input's prompt, subject and object
    (:func:`~pytest_kedit.dataset.input_length.overlong`).
``duplicate``
    A case that runs the same experiment as an earlier case of its file: ConflictEdit cases
    whose two edits agree in subject label, relation id and prompt, old and new object label
    (and, for composite, whose tied facts agree in subject, relation and object label); RoundEdit
    cases whose edits agree so and whose ``true_objects`` hold the same labels in any order;
    streams whose edits agree so in the same order, with the same neighbourhood and locality facts
    and held-out texts.

A record's ``schema`` finding is left out when a ``placeholder``, ``subject`` or ``label`` error
already names the same field. A numeric-only label and a duplicate are warnings (the case runs;
its number means little or counts twice); every other finding is an error.

``strict`` adds the kinds of :mod:`pytest_kedit.dataset.strict_schema` (``layout``, ``semantics``,
``paraphrases``, ``size``: the rules the built-in suites are held to) and makes every warning an
error.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from pytest_kedit.benchmark.cases import Case, ConflictCase, Edit, Fact, RoundCase, StreamCase
from pytest_kedit.benchmark.registry import BENCHMARKS, PROMPT_FILES, ROUND_EDIT, SPLITS, splits_of
from pytest_kedit.dataset import strict_schema, upstream
from pytest_kedit.dataset.input_length import LengthLimit, overlong
from pytest_kedit.dataset.sources import SPLIT_FILES
from pytest_kedit.dataset.validation import (
    Finding,
    paraphrase_file_bytes,
    paraphrases,
    read_bytes,
    record_findings,
    split_records,
)
from pytest_kedit.errors import ConfigError, DataError

KINDS = ("schema", "placeholder", "subject", "label", "type", "length", "duplicate", "layout", "semantics", "paraphrases",
         "size")
_SPLIT_OF_FILE = {name: split for split, name in SPLIT_FILES.items()}
_ROUND_TYPE = re.compile(r"1-(\d+)@(.+)")


def check_data(target: str, strict: bool = False, length: LengthLimit | None = None) -> list[Finding]:
    """The findings of ``target``: a folder in the upstream layout, a split or paraphrase file of
    one, or ``upstream:NAME`` (downloaded first). A split file is checked with the paraphrase file
    beside it. ``strict``: see the module docstring; a strict folder has every split and paraphrase
    file of each benchmark it has a file of.
    ``length``: also report inputs longer than its limit. Raises ConfigError when ``target`` is
    none of these."""
    if upstream.is_upstream(target):
        folder = upstream.fetch(target)
        return _Check(strict, length).files([folder / name for name in SPLIT_FILES.values() if (folder / name).is_file()])
    path = Path(target).expanduser()
    known = [*SPLIT_FILES.values(), *PROMPT_FILES]
    if path.is_dir():
        files = [path / name for name in known if (path / name).is_file()]
        if not files:
            raise ConfigError(f"{target}: holds none of {', '.join(known)}")
        if strict:
            files = [path / name for name in _benchmark_files({file.name for file in files})]
        return _Check(strict, length).files(files)
    if path.is_file():
        if path.name not in known:
            raise ConfigError(f"{target}: not a dataset file; expected one named {', '.join(known)}")
        return _Check(strict, length).files([path])
    raise ConfigError(f"{target}: no such file or folder")


def _benchmark_files(present: set[str]) -> list[str]:
    """The split and paraphrase files of each benchmark one of the ``present`` files belongs to
    (what a strict folder must hold), in the order of :data:`SPLIT_FILES` then :data:`PROMPT_FILES`."""
    wanted: set[str] = set()
    for benchmark in BENCHMARKS:
        files = {*(SPLIT_FILES[split] for split in splits_of(benchmark)), benchmark.prompts_file}
        if present & files:
            wanted |= files
    return [name for name in (*SPLIT_FILES.values(), *PROMPT_FILES) if name in wanted]


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
        (:func:`~pytest_kedit.dataset.validation.paraphrases`; a file that cannot be used gives
        every relation, without paraphrases)."""
        try:
            relations, findings = paraphrases(path, paraphrase_file_bytes(path))
        except DataError as exc:
            self.findings.append(Finding.of(exc))
            return _AnyRelation()
        self.findings.extend(findings)
        if self.strict:
            problems = [problem for relation, prompts in relations.items() if prompts
                        for problem in strict_schema.paraphrase_problems(relation, list(prompts))]
            self.findings.extend(Finding(str(path), None, field, kind, message) for kind, field, message in problems)
        return relations

    def split(self, path: Path, split: str, relations: Mapping[str, Sequence[str]], prompts_name: str) -> None:
        """Add the findings of one split file."""
        file = str(path)
        if self.strict and not path.is_file():
            self.findings.append(Finding(file, None, None, "size", "missing: a strict suite has every split file"))
            return
        try:
            records = split_records(path, read_bytes(path))
        except DataError as exc:
            self.findings.append(Finding.of(exc))
            return
        definitions = self.definitions.setdefault(prompts_name, strict_schema.RelationDefinitions())
        first_of: dict[tuple[Any, ...], int] = {}
        cases = 0
        for index, record in enumerate(records):
            case, findings = record_findings(file, index, split, record, relations, prompts_name)
            self.findings.extend(findings)
            self.findings.extend(_type_findings(file, index, split, record))
            if isinstance(case, DataError):
                continue
            cases += 1
            if self.length is not None:
                self.findings.extend(_length_findings(file, index, case, prompts_name, self.length))
            key = _case_key(case)
            if key in first_of:
                field = "edit" if isinstance(case, RoundCase) else "edits"
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
        too_small = strict_schema.size_problem(split, cases) if self.strict else None
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
    if SPLITS[split].benchmark is not ROUND_EDIT:
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


def _fact_key(fact: Fact) -> tuple[str, ...]:
    return (fact.subject.label, fact.relation.id, fact.relation.prompt, fact.object.label)


def _edit_key(edit: Edit) -> tuple[str, ...]:
    return (edit.subject.label, edit.relation.id, edit.relation.prompt, edit.old.label, edit.new.label)


def _case_key(case: Case) -> tuple[Any, ...]:
    """What makes two cases of a file the same experiment (see the module docstring)."""
    if isinstance(case, ConflictCase):
        return (tuple(_edit_key(e) for e in case.edits), _fact_key(case.tied_fact) if case.tied_fact else None)
    if isinstance(case, StreamCase):
        return (tuple(_edit_key(e) for e in case.edits), tuple(tuple(_fact_key(f) for f in facts) for facts in case.neighbourhood),
                tuple(_fact_key(f) for f in case.locality), case.held_out)
    return (_edit_key(case.edit), tuple(sorted(o.label for o in case.true_objects)))
