"""Benchmark cases as frozen dataclasses, and the parsers/validators of their JSON records.

ConflictEdit records (``coverage_edit.json``, ``reverse_edit.json``, ``composite_edit.json``) hold
``triples`` (the facts involved), ``edits`` (e1, e2) and, for composite, ``prerequisites`` (the
index of the tied fact). RoundEdit records (``easy.json``, ``hard.json``) hold one ``edit`` and
the ``true_objects`` of its (subject, relation). Relations carry their paraphrase prompts from
``conflict_prompts.json`` / ``round_prompts.json``. Every prompt is a template with one ``{}``
that the subject is written into (:func:`prompt_problem`).

A sequential record (``sequential.json``, paraphrases from ``sequential_prompts.json``) is one
stream of edits applied to one model without restoring in between (:class:`StreamCase`)::

    {"type": "sequential",
     "edits": [{"relation": R, "subject": E, "object": E, "new_object": E,
                "neighbourhood": [E, ...]}, ...],
     "locality": [{"relation": R, "subject": E, "object": E}, ...],
     "held_out": ["a plain English text", ...]}

with R a relation ``{"id", "prompt", "query", "label"}`` and E an entity ``{"id", "label"}``
(``id``, ``query`` and ``label`` of a relation may be null), as in the other files. ``edits`` are
applied in their order, each (subject, relation) at most once; an edit's ``neighbourhood`` (may be
empty or left out) names other subjects whose fact under the same relation has the same true
``object`` (and which no edit of the stream edits under that relation); ``locality`` holds known
facts the stream edits none of (no (subject, relation) of an edit), at least one; ``held_out``, at
least one text, is scored for its perplexity. ``type``, when given, is ``"sequential"``
(``kedit check-data`` checks it; the loader does not read it).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from pytest_kedit.errors import DataError


@dataclass(frozen=True)
class Entity:
    label: str
    id: str | None = None


@dataclass(frozen=True)
class Relation:
    id: str
    prompt: str
    paraphrases: tuple[str, ...] = ()
    label: str | None = None

    @property
    def prompts(self) -> tuple[str, ...]:
        """The edit prompt followed by its paraphrases: the prompts every probe averages over."""
        return (self.prompt, *self.paraphrases)

    def edit_prompt_only(self) -> Relation:
        """The relation with its edit prompt alone: a query of it probes that prompt only."""
        return Relation(self.id, self.prompt, (), self.label)

    def paraphrases_only(self) -> Relation:
        """The relation with its paraphrases alone: a query of it averages over them, without the
        edit prompt. ValueError when it has none."""
        if not self.paraphrases:
            raise ValueError(f"relation {self.id} has no paraphrases")
        return Relation(self.id, self.paraphrases[0], self.paraphrases[1:], self.label)


@dataclass(frozen=True)
class Fact:
    subject: Entity
    relation: Relation
    object: Entity


@dataclass(frozen=True)
class Query:
    """p(s, r, o): the probability of ``object`` after each of the relation's prompts, averaged."""

    relation: Relation
    subject: str
    object: str

    def pairs(self) -> list[tuple[str, str]]:
        """(prompt filled with the subject, object) for every prompt of the relation, in order."""
        return [(prompt.format(self.subject), self.object) for prompt in self.relation.prompts]


def mean_per_query(queries: Sequence[Query], probs: np.ndarray) -> list[float]:
    """p of each query: the mean of its prompts' entries in ``probs``, which holds the
    probabilities of every query's :meth:`Query.pairs`, in order."""
    out, start = [], 0
    for q in queries:
        n = len(q.relation.prompts)
        out.append(float(probs[start : start + n].mean()))
        start += n
    return out


@dataclass(frozen=True)
class EditRequest:
    """What an editor receives: make ``prompt.format(subject)`` continue with ``target``."""

    subject: str
    prompt: str
    target: str
    relation_id: str | None = None
    subject_id: str | None = None
    target_id: str | None = None


@dataclass(frozen=True)
class Edit:
    """(subject, relation, old -> new)."""

    subject: Entity
    relation: Relation
    old: Entity
    new: Entity

    def request(self, target: Entity | None = None) -> EditRequest:
        target = target or self.new
        return EditRequest(
            subject=self.subject.label,
            prompt=self.relation.prompt,
            target=target.label,
            relation_id=self.relation.id,
            subject_id=self.subject.id,
            target_id=target.id,
        )


@dataclass(frozen=True)
class ConflictCase:
    case_id: str
    split: str
    index: int
    rule: str | None
    triples: tuple[Fact, ...]
    edits: tuple[Edit, Edit]
    tied_fact: Fact | None = None

    @property
    def relation_group(self) -> str:
        """What the case is grouped by in per-relation breakdowns: its rule (``P22>P40``) where
        the data gives one, else e1's relation id."""
        return self.rule or self.edits[0].relation.id


@dataclass(frozen=True)
class RoundCase:
    case_id: str
    split: str
    index: int
    arity: str
    edit: Edit
    true_objects: tuple[Entity, ...]

    @property
    def relation_group(self) -> str:
        """What the case is grouped by in per-relation breakdowns: the edit's relation id."""
        return self.edit.relation.id

    @property
    def others(self) -> tuple[Entity, ...]:
        """The true objects other than the round-edited one (Others = Obj \\ {o1})."""
        return tuple(o for o in self.true_objects if o.label != self.edit.old.label)

    @property
    def others_first_o1_removed(self) -> tuple[Entity, ...]:
        """The true objects with only the first copy of o1 removed: the published code's Others
        (``list.remove``), which keeps a repeated o1 among them (``--kedit-protocol=upstream``)."""
        labels = [o.label for o in self.true_objects]
        first = labels.index(self.edit.old.label)
        return self.true_objects[:first] + self.true_objects[first + 1 :]


@dataclass(frozen=True)
class StreamCase:
    """A stream of edits applied to one model in their order, without restoring in between."""

    case_id: str
    split: str
    index: int
    edits: tuple[Edit, ...]
    #: per edit (same order), its neighbourhood facts: other subjects, same relation, same true object
    neighbourhood: tuple[tuple[Fact, ...], ...]
    #: known facts the stream does not edit, probed at every checkpoint
    locality: tuple[Fact, ...]
    #: texts whose perplexity is measured at every checkpoint
    held_out: tuple[str, ...]

    @property
    def relation_group(self) -> str:
        """What the case is grouped by in per-relation breakdowns: a stream mixes relations, so
        every stream is in the group ``stream``."""
        return "stream"


Case = ConflictCase | RoundCase | StreamCase


def case_id(split: str, index: int) -> str:
    return f"{split}-{index:04d}"


#: Fills a prompt whose subject is not at hand; no real prompt contains it.
_SENTINEL = "\0subject\0"


def prompt_problem(prompt: str, subject: str | None = None) -> tuple[str, str] | None:
    """Why ``prompt`` is not a template the subject can be written into, as (kind, message), or None.

    ``placeholder``: it has no ``{}`` or several; ``subject``: ``prompt.format(subject)`` (how
    probes and editors fill it) fails or leaves the subject out, because of other braces (``{0}``,
    ``{name}``, ``{{}}``). ``subject``, when known, fills the prompt and is named when the prompt
    holds it written out instead of ``{}``.
    """
    slots = prompt.count("{}")
    if slots == 0:
        hint = f" (the subject {subject!r} is written out: put '{{}}' in its place)" if subject and subject in prompt else ""
        return "placeholder", f"has no '{{}}' for the subject: {prompt!r}{hint}"
    if slots > 1:
        return "placeholder", f"has {slots} '{{}}', exactly one takes the subject: {prompt!r}"
    filler = subject or _SENTINEL
    try:
        filled = prompt.format(filler)
    except (IndexError, KeyError, ValueError) as exc:
        problem = f"prompt.format(subject) fails ({type(exc).__name__}: {exc})"
        return "subject", f"{problem}; write literal braces as '{{{{' and '}}}}': {prompt!r}"
    if filler not in filled:
        return "subject", f"prompt.format(subject) leaves the subject out: {prompt!r}"
    return None


class _Record:
    """Field access into one JSON record that raises DataError naming file, record and field."""

    def __init__(self, path: str, index: int, value: Any, prefix: str = ""):
        self.path, self.index, self.value, self.prefix = path, index, value, prefix

    def error(self, field: str, message: str) -> DataError:
        return DataError(self.path, message, record=self.index, field=self.prefix + field)

    def child(self, field: str, kind: type = dict) -> _Record:
        return _Record(self.path, self.index, self.get(field, kind), f"{self.prefix}{field}.")

    def get(self, field: str, kind: type = str) -> Any:
        if not isinstance(self.value, dict):
            raise self.error("", f"expected an object, got {type(self.value).__name__}")
        if field not in self.value:
            raise self.error(field, "missing")
        value = self.value[field]
        if not isinstance(value, kind):
            raise self.error(field, f"expected {kind.__name__}, got {type(value).__name__}")
        if isinstance(value, str) and not value.strip():
            raise self.error(field, "is empty")
        return value

    def items(self, field: str) -> list[_Record]:
        values = self.get(field, list)
        return [_Record(self.path, self.index, v, f"{self.prefix}{field}[{i}].") for i, v in enumerate(values)]


def _entity(rec: _Record) -> Entity:
    label = rec.get("label")
    ident = rec.value.get("id")
    return Entity(label=label, id=str(ident) if ident is not None else None)


def _relation(rec: _Record, paraphrases: Mapping[str, Sequence[str]], prompts_name: str, subject: Entity) -> Relation:
    rel_id = rec.get("id")
    prompt = rec.get("prompt")
    problem = prompt_problem(prompt, subject.label)
    if problem is not None:
        raise rec.error("prompt", problem[1])
    if rel_id not in paraphrases:
        raise rec.error("id", f"relation {rel_id} has no paraphrase prompts in {prompts_name}")
    label = rec.value.get("label")
    return Relation(id=rel_id, prompt=prompt, paraphrases=tuple(paraphrases[rel_id]), label=label)


def _fact(rec: _Record, paraphrases: Mapping[str, Sequence[str]], prompts_name: str) -> Fact:
    subject = _entity(rec.child("subject"))
    return Fact(
        subject=subject,
        relation=_relation(rec.child("relation"), paraphrases, prompts_name, subject),
        object=_entity(rec.child("object")),
    )


def _edit(rec: _Record, paraphrases: Mapping[str, Sequence[str]], prompts_name: str, old_field: str = "object") -> Edit:
    subject = _entity(rec.child("subject"))
    return Edit(
        subject=subject,
        relation=_relation(rec.child("relation"), paraphrases, prompts_name, subject),
        old=_entity(rec.child(old_field)),
        new=_entity(rec.child("new_object")),
    )


def parse_conflict_case(
    record: Any, split: str, index: int, path: str, paraphrases: Mapping[str, Sequence[str]], prompts_name: str
) -> ConflictCase:
    """One ConflictEdit record -> ConflictCase, or DataError naming the field at fault."""
    rec = _Record(path, index, record)
    triples = tuple(_fact(t, paraphrases, prompts_name) for t in rec.items("triples"))
    edit_recs = rec.items("edits")
    if len(edit_recs) != 2:
        raise rec.error("edits", f"expected 2 edits (e1, e2), got {len(edit_recs)}")
    # In composite records, e2's "object" is the fact before e1; "true_object" is what e1 implies.
    e1 = _edit(edit_recs[0], paraphrases, prompts_name)
    e2_old = "true_object" if split == "composite" and "true_object" in edit_recs[1].value else "object"
    e2 = _edit(edit_recs[1], paraphrases, prompts_name, old_field=e2_old)
    tied = None
    if split == "composite":
        prereq = record.get("prerequisites") or [0]
        if not isinstance(prereq, list) or not isinstance(prereq[0], int) or not 0 <= prereq[0] < len(triples):
            raise rec.error("prerequisites", f"must index the tied fact in triples, got {prereq!r}")
        tied = triples[prereq[0]]
    if split == "reverse" and e2.subject.label != e1.new.label:
        raise rec.error("edits[1].subject", f"reverse e2 must edit e1's new object {e1.new.label!r}")
    if split == "coverage" and (e1.subject.label, e1.relation.id) != (e2.subject.label, e2.relation.id):
        raise rec.error("edits[1]", "coverage e2 must edit the same subject and relation as e1")
    rule = record.get("rule")
    return ConflictCase(
        case_id=case_id(split, index),
        split=split,
        index=index,
        rule=str(rule) if rule else None,
        triples=triples,
        edits=(e1, e2),
        tied_fact=tied,
    )


def parse_round_case(
    record: Any, split: str, index: int, path: str, paraphrases: Mapping[str, Sequence[str]], prompts_name: str
) -> RoundCase:
    """One RoundEdit record -> RoundCase, or DataError naming the field at fault."""
    rec = _Record(path, index, record)
    edit = _edit(rec.child("edit"), paraphrases, prompts_name)
    true_objects = tuple(_entity(o) for o in rec.items("true_objects"))
    if not true_objects:
        raise rec.error("true_objects", "is empty: a RoundEdit case needs the edited object and at least one other")
    labels = [o.label for o in true_objects]
    if edit.old.label not in labels:
        raise rec.error("edit.object", f"{edit.old.label!r} is not among true_objects {labels}")
    if len(set(labels)) < 2:
        raise rec.error("true_objects", "needs at least two distinct objects (the edited one and others)")
    if edit.new.label in labels:
        raise rec.error("edit.new_object", f"{edit.new.label!r} is one of the true objects")
    arity = record.get("type") or f"1-{len(labels)}@{edit.relation.id}"
    return RoundCase(
        case_id=case_id(split, index),
        split=split,
        index=index,
        arity=str(arity),
        edit=edit,
        true_objects=true_objects,
    )


def parse_stream_case(
    record: Any, split: str, index: int, path: str, paraphrases: Mapping[str, Sequence[str]], prompts_name: str
) -> StreamCase:
    """One sequential record -> StreamCase, or DataError naming the field at fault (the schema is in
    the module docstring)."""
    rec = _Record(path, index, record)
    edit_recs = rec.items("edits")
    if not edit_recs:
        raise rec.error("edits", "is empty: a stream needs at least one edit")
    edits, neighbourhood = [], []
    for edit_rec in edit_recs:
        edit = _edit(edit_rec, paraphrases, prompts_name)
        if edit.new.label == edit.old.label:
            raise edit_rec.error("new_object", f"{edit.new.label!r} is the object it replaces")
        edits.append(edit)
        neighbours = edit_rec.items("neighbourhood") if "neighbourhood" in edit_rec.value else []
        neighbourhood.append(tuple(Fact(_entity(n), edit.relation, edit.old) for n in neighbours))
    edited: dict[tuple[str, str], int] = {}
    for i, edit in enumerate(edits):
        key = (edit.subject.label, edit.relation.id)
        if key in edited:
            raise rec.error(f"edits[{i}]", f"edits {key[0]!r} under {key[1]} again (first in edits[{edited[key]}])")
        edited[key] = i
    for i, facts in enumerate(neighbourhood):
        for j, fact in enumerate(facts):
            key = (fact.subject.label, fact.relation.id)
            if key in edited:
                raise rec.error(f"edits[{i}].neighbourhood[{j}]", f"{key[0]!r} under {key[1]} is edited in edits[{edited[key]}]")
    locality = tuple(_fact(item, paraphrases, prompts_name) for item in rec.items("locality"))
    if not locality:
        raise rec.error("locality", "is empty: a stream needs at least one locality fact")
    for j, fact in enumerate(locality):
        key = (fact.subject.label, fact.relation.id)
        if key in edited:
            raise rec.error(f"locality[{j}]", f"{key[0]!r} under {key[1]} is edited in edits[{edited[key]}]")
    texts = rec.get("held_out", list)
    if not texts:
        raise rec.error("held_out", "is empty: a stream needs at least one text")
    for j, text in enumerate(texts):
        if not isinstance(text, str) or not text.strip():
            raise rec.error(f"held_out[{j}]", "expected a non-empty string")
    return StreamCase(
        case_id=case_id(split, index),
        split=split,
        index=index,
        edits=tuple(edits),
        neighbourhood=tuple(neighbourhood),
        locality=locality,
        held_out=tuple(texts),
    )
