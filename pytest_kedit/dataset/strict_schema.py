"""What ``kedit check-data --strict`` adds: the rules the built-in suites are held to.

The loader (:mod:`pytest_kedit.benchmark.cases`) is lenient: it reads the fields a plan needs. A strict
suite also reads like the upstream files and keeps the relations the plans assume:

``layout``
    Every object has exactly the upstream keys in the upstream order (records, triples, edits,
    relations, entities; a stream's as :mod:`pytest_kedit.benchmark.cases` lists them, with every
    edit's ``neighbourhood``); no prompt, paraphrase or held-out text has white space at either end.
``semantics``
    The record's ``type`` (and ``rule``) say what it holds; ``triples`` and ``edits`` relate as the
    split's plan assumes (coverage: e2 = (s, r, o2 -> o3); reverse: e2 = (o2, r2, s1 -> s2);
    composite: e1 edits ``triples[1]`` and e2 ``triples[2]``, k_f = ``triples[0]``); a RoundEdit
    case has 2 to 5 true objects; a relation id means one relation (same prompt, query and label)
    in every record.
``paraphrases``
    Every relation of a paraphrase file has exactly 10 distinct paraphrases.
``size``
    Every split file of a benchmark the suite has is present and holds at least 12 valid cases
    (a sequential file: at least one stream).

The functions return problems as ``(kind, field, message)``; a field of None is the whole record.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from pytest_kedit.benchmark.registry import ROUND_EDIT, SEQUENTIAL, SPLITS

PARAPHRASES_PER_RELATION = 10
MIN_CASES = 12
#: A sequential file holds streams, each a whole experiment: one is enough.
MIN_STREAMS = 1
#: The fewest and most true objects of a RoundEdit case.
ROUND_OBJECTS = (2, 5)

Problem = tuple[str, str | None, str]

ENTITY_KEYS = ("id", "label")
RELATION_KEYS = ("id", "prompt", "query", "label")
TRIPLE_KEYS = ("relation", "subject", "object")
CONFLICT_EDIT_KEYS = ("relation", "subject", "object", "new_object")
COMPOSITE_E2_KEYS = ("relation", "subject", "object", "true_object", "new_object")
ROUND_EDIT_KEYS = ("relation", "subject", "new_object", "object")
STREAM_EDIT_KEYS = ("relation", "subject", "object", "new_object", "neighbourhood")
RECORD_KEYS = {
    "coverage": ("triples", "prerequisites", "type", "edits"),
    "reverse": ("rule", "triples", "prerequisites", "type", "edits"),
    "composite": ("rule", "triples", "prerequisites", "type", "edits"),
    "easy": ("type", "edit", "true_objects"),
    "hard": ("type", "edit", "true_objects"),
    "sequential": ("type", "edits", "locality", "held_out"),
}


def record_problems(split: str, record: Mapping[str, Any]) -> list[Problem]:
    """The layout problems of a record that the loader accepted; its semantic problems when its
    layout is right (they read fields the layout guarantees)."""
    layout = _Layout()
    if not layout.keys(None, record, RECORD_KEYS[split]):
        return layout.problems
    if SPLITS[split].benchmark is ROUND_EDIT:
        layout.node("edit", record["edit"], ROUND_EDIT_KEYS)
        for i, obj in enumerate(record["true_objects"]):
            layout.keys(f"true_objects[{i}]", obj, ENTITY_KEYS)
    elif SPLITS[split].benchmark is SEQUENTIAL:
        for i, edit in enumerate(record["edits"]):
            layout.node(f"edits[{i}]", edit, STREAM_EDIT_KEYS)
        for j, fact in enumerate(record["locality"]):
            layout.node(f"locality[{j}]", fact, TRIPLE_KEYS)
        layout.problems += [("layout", f"held_out[{j}]", f"white space around {text!r}")
                            for j, text in enumerate(record["held_out"]) if text != text.strip()]
    else:
        for i, triple in enumerate(record["triples"]):
            layout.node(f"triples[{i}]", triple, TRIPLE_KEYS)
        e1, e2 = record["edits"]
        layout.node("edits[0]", e1, CONFLICT_EDIT_KEYS)
        layout.node("edits[1]", e2, COMPOSITE_E2_KEYS if split == "composite" else CONFLICT_EDIT_KEYS)
    if layout.problems:
        return layout.problems
    benchmark = SPLITS[split].benchmark
    rules = _round_semantics if benchmark is ROUND_EDIT else _stream_semantics if benchmark is SEQUENTIAL else _conflict_semantics
    return [("semantics", field, message) for field, message in rules(split, record)]


def paraphrase_problems(relation: str, prompts: list[str]) -> list[Problem]:
    """The problems of one relation's paraphrases (the loader already checked each has one ``{}``)."""
    problems: list[Problem] = [
        ("layout", f"{relation}[{i}]", f"white space around {prompt!r}") for i, prompt in enumerate(prompts)
        if prompt != prompt.strip()
    ]
    if len(prompts) != PARAPHRASES_PER_RELATION or len(set(prompts)) != len(prompts):
        problems.append(("paraphrases", relation, f"{len(set(prompts))} distinct paraphrases in {len(prompts)}, "
                                                  f"expected {PARAPHRASES_PER_RELATION} distinct"))
    return problems


def size_problem(split: str, cases: int) -> str | None:
    """Why a file of ``split`` with ``cases`` valid cases is too small, if it is: fewer than
    :data:`MIN_CASES` (a sequential file: :data:`MIN_STREAMS`)."""
    least = MIN_STREAMS if SPLITS[split].benchmark is SEQUENTIAL else MIN_CASES
    return f"{cases} valid cases, at least {least} expected" if cases < least else None


class RelationDefinitions:
    """The first definition of each relation id met in a suite, to find later ones that differ."""

    def __init__(self) -> None:
        self._first: dict[str, tuple[str, str]] = {}

    def conflicts(self, record: Mapping[str, Any], where: str) -> list[tuple[str, str]]:
        """``(field, message)`` for each relation of ``record`` (found at ``where``) that differs
        from its first definition; relations met for the first time become that definition."""
        found = []
        for field, relation in _relations(record):
            definition = json.dumps(relation, sort_keys=True)
            first, first_where = self._first.setdefault(relation["id"], (definition, f"{where}, {field}"))
            if definition != first:
                found.append((field, f"relation {relation['id']} differs from its definition in {first_where}"))
        return found


def _relations(record: Mapping[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    if "edit" in record:
        return [("edit.relation", record["edit"]["relation"])]
    facts = "locality" if "locality" in record else "triples"
    triples = [(f"{facts}[{i}].relation", t["relation"]) for i, t in enumerate(record[facts])]
    return triples + [(f"edits[{i}].relation", e["relation"]) for i, e in enumerate(record["edits"])]


class _Layout:
    """Collects layout problems while walking a record."""

    def __init__(self) -> None:
        self.problems: list[Problem] = []

    def keys(self, field: str | None, value: Any, expected: tuple[str, ...]) -> bool:
        if isinstance(value, dict) and tuple(value) == expected:
            return True
        got = list(value) if isinstance(value, dict) else type(value).__name__
        message = f"keys {got}, expected {list(expected)} (the upstream schema, in order)"
        self.problems.append(("layout", field, message))
        return False

    def node(self, field: str, value: Any, expected: tuple[str, ...]) -> None:
        """A triple or an edit: ``expected`` starts with "relation", then names its entities (a
        stream edit's ``neighbourhood``: a list of them)."""
        if not self.keys(field, value, expected):
            return
        relation = value["relation"]
        if self.keys(f"{field}.relation", relation, RELATION_KEYS) and relation["prompt"] != relation["prompt"].strip():
            self.problems.append(("layout", f"{field}.relation.prompt", f"white space around {relation['prompt']!r}"))
        for name in expected[1:]:
            if name == "neighbourhood":
                for j, entity in enumerate(value[name]):
                    self.keys(f"{field}.{name}[{j}]", entity, ENTITY_KEYS)
            else:
                self.keys(f"{field}.{name}", value[name], ENTITY_KEYS)


def _fact(value: Mapping[str, Any]) -> tuple[str, str, str]:
    """(subject label, relation id, object label) of a triple, or of an edit's old fact."""
    return (value["subject"]["label"], value["relation"]["id"], value["object"]["label"])


def _stream_semantics(split: str, record: Mapping[str, Any]) -> list[tuple[str, str]]:
    """A stream's ``type`` is its split (the rest the loader checks)."""
    return [] if record["type"] == split else [("type", f"{record['type']!r}, expected {split!r}")]


def _round_semantics(split: str, record: Mapping[str, Any]) -> list[tuple[str, str]]:
    n, relation = len(record["true_objects"]), record["edit"]["relation"]["id"]
    problems = []
    if record["type"] != f"1-{n}@{relation}":
        problems.append(("type", f"{record['type']!r}, expected '1-{n}@{relation}'"))
    low, high = ROUND_OBJECTS
    if not low <= n <= high:
        problems.append(("true_objects", f"{n} true objects, expected {low} to {high}"))
    return problems


def _conflict_semantics(split: str, record: Mapping[str, Any]) -> list[tuple[str, str]]:
    """How triples and edits relate in each ConflictEdit split (as the plans of :mod:`pytest_kedit.benchmark.plans` assume)."""
    triples, (e1, e2) = [_fact(t) for t in record["triples"]], record["edits"]
    s1, r1, o1 = _fact(e1)
    o2, r2 = e1["new_object"]["label"], e2["relation"]["id"]
    expected: dict[str, tuple[bool, str]] = {
        "type": (record["type"] == split, f"{record['type']!r}, expected {split!r}"),
    }
    if split == "coverage":
        expected |= {
            "triples": (triples == [(s1, r1, o1)], "must be [e1's fact (s, r, o1)]"),
            "prerequisites": (record["prerequisites"] == [], "must be []"),
            "edits[1]": (_fact(e2) == (s1, r1, o2), "e2 must be (s, r, o2 -> o3), o2 the new object of e1"),
        }
    elif split == "reverse":
        expected |= {
            "rule": (record["rule"] == f"{r1}>{r2}", f"{record['rule']!r}, expected '{r1}>{r2}'"),
            "triples": (triples == [(s1, r1, o1), (o1, r2, s1)], "must be [(s1, r1, o1), (o1, r2, s1)]"),
            "prerequisites": (record["prerequisites"] == [], "must be []"),
            "edits[1]": (_fact(e2) == (o2, r2, s1), "e2 must be (o2, r2, s1 -> s2), o2 the new object of e1"),
        }
    elif len(triples) != 3:
        expected["triples"] = (False, f"{len(triples)} triples, expected 3: k_f = (s, r, m), (m, r1, o), (s, r2, o)")
    else:
        (s, r, m), fact1, fact2 = triples
        expected |= {
            "rule": (record["rule"] == f"{r}&{r1}>{r2}", f"{record['rule']!r}, expected '{r}&{r1}>{r2}'"),
            "prerequisites": (record["prerequisites"] == [0], "must be [0]: the tied fact is triples[0]"),
            "edits[0]": (fact1 == (m, r1, o1) == _fact(e1), "e1 must edit triples[1] = (m, r1, o), m k_f's object"),
            "edits[1]": (fact2 == (s, r2, o1) == _fact(e2), "e2 must edit triples[2] = (s, r2, o), s k_f's subject"),
            "edits[1].true_object": (e2["true_object"] == e1["new_object"], "must be e1's new_object"),
        }
    return [(field, message) for field, (ok, message) in expected.items() if not ok]
