"""MEND's training data: edit requests made from benchmark cases, split so that nothing of the
evaluated suite is seen in training.

Every edit of a case (ConflictEdit, RoundEdit, a stream) becomes an :class:`EditExample` (the edit
prompt, the relation's paraphrases, the new object); every fact a case states (its triples, a
RoundEdit fact before the edit, a stream's facts before its edits and its locality facts) becomes a
:class:`FactExample`, the unrelated inputs of the locality loss.

No leakage: a source case is dropped when it is a case of the evaluated suite (same edits) or
mentions any entity of it (as subject or object of a triple, an edit, a true object, a stream's
neighbourhood or locality fact), so no
subject of the suite is ever edited, paraphrased or used for locality in training. The rest is
split by subject: an example is held out for validation when the sha256 of its subject ends in
a multiple of ``1 / val_fraction`` — train and validation subjects are disjoint, and the split
does not depend on the order of the files. The ``split`` section of the manifest lists the
excluded entities and the subjects of both parts, so :func:`leaked_entities` can check it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from pytest_kedit.benchmark.cases import Case, ConflictCase, Edit, RoundCase, StreamCase
from pytest_kedit.benchmark.registry import SPLITS
from pytest_kedit.dataset.sources import Suite, load_suite
from pytest_kedit.errors import DataError

#: One example in this many is held out for validation (by subject).
VAL_EVERY = 10


@dataclass(frozen=True)
class EditExample:
    """Make every prompt of ``prompts`` (``{}`` for the subject; the edit prompt first, then its
    paraphrases) continue with ``target`` instead of ``old``."""

    subject: str
    prompts: tuple[str, ...]
    target: str
    old: str
    case_id: str


@dataclass(frozen=True)
class FactExample:
    """A fact as the model should keep stating it: ``prompt.format(subject)`` -> ``object``."""

    subject: str
    prompt: str
    object: str


@dataclass
class TrainingData:
    train: list[EditExample]
    val: list[EditExample]
    #: locality facts of the training part's subjects
    facts: list[FactExample]
    #: locality facts of the validation part's subjects, never trained on
    val_facts: list[FactExample]
    #: the manifest's record of the split (see the module docstring)
    split: dict[str, Any] = field(default_factory=dict)
    fingerprint: str = ""


def normalised(label: str) -> str:
    return " ".join(label.split()).casefold()


def case_entities(case: Case) -> Iterator[str]:
    """Every entity label a case mentions."""
    if isinstance(case, ConflictCase):
        for fact in case.triples:
            yield from (fact.subject.label, fact.object.label)
    elif isinstance(case, StreamCase):
        for fact in (*case.locality, *(fact for facts in case.neighbourhood for fact in facts)):
            yield from (fact.subject.label, fact.object.label)
    else:
        yield from (o.label for o in case.true_objects)
    for edit in _case_edits(case):
        yield from (edit.subject.label, edit.old.label, edit.new.label)


def _case_edits(case: Case) -> tuple[Edit, ...]:
    return (case.edit,) if isinstance(case, RoundCase) else case.edits


def _edit_key(edit: Edit) -> tuple[str, str, str, str]:
    return (normalised(edit.subject.label), edit.relation.id, normalised(edit.old.label), normalised(edit.new.label))


def _facts(case: Case) -> list[FactExample]:
    if isinstance(case, ConflictCase):
        return [FactExample(f.subject.label, f.relation.prompt, f.object.label) for f in case.triples]
    locality = case.locality if isinstance(case, StreamCase) else ()
    return [*(FactExample(edit.subject.label, edit.relation.prompt, edit.old.label) for edit in _case_edits(case)),
            *(FactExample(f.subject.label, f.relation.prompt, f.object.label) for f in locality)]


def _cases(suite: Suite) -> list[Case]:
    return [entry for entries in suite.splits.values() for entry in entries if not isinstance(entry, DataError)]


def is_validation(subject: str) -> bool:
    return int(hashlib.sha256(normalised(subject).encode()).hexdigest(), 16) % VAL_EVERY == 0


def training_data(source: str, evaluated: str | None) -> TrainingData:
    """Edit and fact examples of the benchmark data at ``source`` (a folder in the upstream layout,
    or ``upstream:NAME``), without anything of the suite ``evaluated`` (None: the built-in suites)."""
    splits = list(SPLITS)
    suite, data = load_suite(evaluated, splits), load_suite(source, splits)
    excluded = {normalised(label) for case in _cases(suite) for label in case_entities(case)}
    suite_edits = {_edit_key(edit) for case in _cases(suite) for edit in _case_edits(case)}
    train: dict[tuple[str, str, str], EditExample] = {}
    val: dict[tuple[str, str, str], EditExample] = {}
    facts: dict[tuple[str, str, str], FactExample] = {}
    val_facts: dict[tuple[str, str, str], FactExample] = {}
    dropped = {"same case": 0, "shares an entity": 0}
    for case in _cases(data):
        if any(_edit_key(edit) in suite_edits for edit in _case_edits(case)):
            dropped["same case"] += 1
            continue
        if any(normalised(label) in excluded for label in case_entities(case)):
            dropped["shares an entity"] += 1
            continue
        for edit in _case_edits(case):
            example = EditExample(edit.subject.label, edit.relation.prompts, edit.new.label, edit.old.label, case.case_id)
            part = val if is_validation(edit.subject.label) else train
            part.setdefault((normalised(example.subject), edit.relation.prompt, normalised(example.target)), example)
        for fact in _facts(case):
            part_facts = val_facts if is_validation(fact.subject) else facts
            part_facts.setdefault((normalised(fact.subject), fact.prompt, normalised(fact.object)), fact)
    split = {
        "source": str(source),
        "source_fingerprint": data.fingerprint,
        "evaluated_suite": suite.source,
        "evaluated_fingerprint": suite.fingerprint,
        "rule": "drop a source case that repeats an edit of the evaluated suite or mentions any of its entities; "
        f"hold out the examples whose subject's sha256 is 0 mod {VAL_EVERY}",
        "source_cases": len(_cases(data)),
        "dropped_cases": dropped,
        "excluded_entities": sorted(excluded),
        "train_subjects": sorted({normalised(e.subject) for e in train.values()}),
        "val_subjects": sorted({normalised(e.subject) for e in val.values()}),
        "fact_subjects": sorted({normalised(f.subject) for f in facts.values()}),
        "val_fact_subjects": sorted({normalised(f.subject) for f in val_facts.values()}),
        "train_examples": len(train),
        "val_examples": len(val),
        "facts": len(facts),
        "val_facts": len(val_facts),
    }
    fingerprint = hashlib.sha256(f"{data.fingerprint}:{suite.fingerprint}:{VAL_EVERY}".encode()).hexdigest()[:16]
    return TrainingData(list(train.values()), list(val.values()), list(facts.values()), list(val_facts.values()), split, fingerprint)


def leaked_entities(split: dict[str, Any], suite: Suite) -> list[str]:
    """The entities of ``suite`` that the training recorded in ``split`` used as a subject
    (edited, validated or stated as a locality fact): empty when there was no leakage."""
    used = {subject for part in ("train_subjects", "val_subjects", "fact_subjects", "val_fact_subjects") for subject in split.get(part, ())}
    return sorted(used & {normalised(label) for case in _cases(suite) for label in case_entities(case)})
