#!/usr/bin/env python
"""Check the built-in suites against the embedded model and write them to ``data/``.

The built-in suites are authored as candidates in ``scripts/builtin_candidates.json``: one list of
records per split, in the upstream schema, plus the paraphrase prompts of every relation. This
script keeps the candidates the model passes and writes them, in candidate order, to the files
the plugin reads::

    data/coverage_edit.json  data/reverse_edit.json  data/composite_edit.json
    data/easy.json  data/hard.json  data/conflict_prompts.json  data/round_prompts.json
    data/manifest.json

The knowledge checks are the paper's, implemented in ``pytest_kedit.knowledge_check`` and shared
with ``kedit build-suite``:

* composite cases (Appendix A.1.1, step 3): the tied fact k_f (``triples[prerequisites[0]]``) is
  known when its relation's edit prompt, filled with its subject and continued greedily for 12 new
  tokens, contains the object label as a whole word (case-insensitive);
* RoundEdit cases (Appendix A.1.2, step 2): the round-edited object o1 (``edit.object``) is
  produced (its first token among the 10 most probable next tokens after the edit prompt or one
  of the relation's 10 paraphrases) and preferred to the target (p(s, r, o1) > p(s, r, o*)). The
  best rank of every true object and all probabilities are recorded in the manifest.

Coverage and reverse cases have no knowledge check (the protocol does not ask for one); like all
cases they must parse with the plugin's reader and keep exactly the upstream schema. A candidate
whose checked object label occurs inside its subject label is rejected: an echo of the subject
would pass the check.

Usage, from the repository root::

    python scripts/check_builtin_suites.py            # check the candidates and rewrite data/
    python scripts/check_builtin_suites.py --check    # re-check data/ as it is; exit 1 on a failure
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch
import transformers

from pytest_kedit.cases import (
    ROUND_SPLITS,
    SPLITS,
    Case,
    case_id,
    parse_conflict_case,
    parse_prompts,
    parse_round_case,
)
from pytest_kedit.datasets import CONFLICT_PROMPTS, ROUND_PROMPTS, SPLIT_FILES, load_suite
from pytest_kedit.errors import DataError
from pytest_kedit.knowledge_check import KnowledgeCheck, criteria
from pytest_kedit.models import load_model

REPO = Path(__file__).resolve().parents[1]
DEFAULT_CANDIDATES = REPO / "scripts" / "builtin_candidates.json"
DEFAULT_DATA = REPO / "data"
MANIFEST = "manifest.json"

MODEL = "smollm2-135m"
PARAPHRASES_PER_RELATION = 10
MIN_CASES_PER_SPLIT = 12
ROUND_OBJECTS = (2, 5)

CRITERIA = criteria()
SPLIT_CHECKS = {
    "coverage": "none: the protocol needs no knowledge check; schema and semantics only",
    "reverse": "none: the protocol needs no knowledge check; schema and semantics only",
    "composite": "the tied fact k_f = triples[prerequisites[0]] is known on its relation's edit prompt",
    "easy": (
        "the round-edited object o1 = edit.object is produced after the relation's edit prompt or one of its "
        f"{PARAPHRASES_PER_RELATION} paraphrases, and preferred to the target; every true object's best rank is recorded"
    ),
}
SPLIT_CHECKS["hard"] = SPLIT_CHECKS["easy"]


# --------------------------------------------------------------------------- the model


@dataclass
class Checker:
    """The model's knowledge checks and what identifies the model."""

    knowledge: KnowledgeCheck
    info: dict[str, str]


def load_checker(model_name: str) -> Checker:
    # Short prompts on a small model: one thread is as fast as several, does not fight other
    # processes for cores, and always sums in the same order.
    torch.set_num_threads(1)
    loaded = load_model(model_name, device="cpu", dtype="float32")
    info = {
        "name": loaded.name,
        "fingerprint": loaded.fingerprint,
        "device": str(loaded.device),
        "dtype": str(loaded.dtype).removeprefix("torch."),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
    }
    return Checker(KnowledgeCheck(loaded.model, loaded.tokenizer), info)


# --------------------------------------------------------------------------- schema and semantics

ENTITY_KEYS = ["id", "label"]
RELATION_KEYS = ["id", "prompt", "query", "label"]
TRIPLE_KEYS = ["relation", "subject", "object"]
CONFLICT_EDIT_KEYS = ["relation", "subject", "object", "new_object"]
COMPOSITE_E2_KEYS = ["relation", "subject", "object", "true_object", "new_object"]
ROUND_EDIT_KEYS = ["relation", "subject", "new_object", "object"]
RECORD_KEYS = {
    "coverage": ["triples", "prerequisites", "type", "edits"],
    "reverse": ["rule", "triples", "prerequisites", "type", "edits"],
    "composite": ["rule", "triples", "prerequisites", "type", "edits"],
    "easy": ["type", "edit", "true_objects"],
    "hard": ["type", "edit", "true_objects"],
}


def _fact(value: Mapping[str, Any]) -> tuple[str, str, str]:
    """(subject label, relation id, object label) of a triple, or of an edit's old fact."""
    return (value["subject"]["label"], value["relation"]["id"], value["object"]["label"])


class _Problems(list[str]):
    """What is wrong with one record, as readable messages."""

    def keys(self, where: str, value: Any, expected: list[str]) -> bool:
        if isinstance(value, dict) and list(value) == expected:
            return True
        got = list(value) if isinstance(value, dict) else type(value).__name__
        self.append(f"{where}: keys {got}, expected {expected} (the upstream schema, in its order)")
        return False

    def node(self, where: str, value: Any, expected: list[str]) -> None:
        """A triple or an edit (``expected`` starts with "relation", then its entities)."""
        if not self.keys(where, value, expected):
            return
        relation = value["relation"]
        if self.keys(f"{where}.relation", relation, RELATION_KEYS) and relation["prompt"] != relation["prompt"].strip():
            self.append(f"{where}.relation.prompt: whitespace around {relation['prompt']!r}")
        for name in expected[1:]:
            self.keys(f"{where}.{name}", value[name], ENTITY_KEYS)

    def expect(self, ok: bool, message: str) -> None:
        if not ok:
            self.append(message)


def shape_problems(split: str, record: Any) -> list[str]:
    """Where a record departs from the upstream schema or from its split's semantics (DESIGN.md).

    The plugin's parser is lenient; the built-in suites hold exactly what the upstream files hold,
    so that they read like upstream data and can be mixed with it.
    """
    problems = _Problems()
    if not problems.keys("record", record, RECORD_KEYS[split]):
        return problems
    if split in ROUND_SPLITS:
        problems.node("edit", record["edit"], ROUND_EDIT_KEYS)
        for i, obj in enumerate(record["true_objects"]):
            problems.keys(f"true_objects[{i}]", obj, ENTITY_KEYS)
        if not problems:
            n, rid = len(record["true_objects"]), record["edit"]["relation"]["id"]
            problems.expect(record["type"] == f"1-{n}@{rid}", f"type {record['type']!r}, expected '1-{n}@{rid}'")
            low, high = ROUND_OBJECTS
            problems.expect(low <= n <= high, f"{n} true objects, expected {low} to {high}")
        return problems
    problems.expect(record["type"] == split, f"type {record['type']!r}, expected {split!r}")
    for i, triple in enumerate(record["triples"]):
        problems.node(f"triples[{i}]", triple, TRIPLE_KEYS)
    edits = record["edits"]
    if len(edits) != 2:
        problems.append(f"{len(edits)} edits, expected 2")
        return problems
    problems.node("edits[0]", edits[0], CONFLICT_EDIT_KEYS)
    problems.node("edits[1]", edits[1], COMPOSITE_E2_KEYS if split == "composite" else CONFLICT_EDIT_KEYS)
    if not problems:
        _conflict_semantics(split, record, problems)
    return problems


def _conflict_semantics(split: str, record: Mapping[str, Any], problems: _Problems) -> None:
    """How triples and edits relate in each ConflictEdit split; the protocols rely on it."""
    triples, (e1, e2) = record["triples"], record["edits"]
    s1, r1, o1 = _fact(e1)
    o2, r2 = e1["new_object"]["label"], e2["relation"]["id"]
    if split == "coverage":
        problems.expect([_fact(t) for t in triples] == [(s1, r1, o1)], "triples must be [e1's fact]")
        problems.expect(record["prerequisites"] == [], "prerequisites must be []")
        problems.expect(_fact(e2) == (s1, r1, o2), "e2 must be (s, r, o2 -> o3)")
    elif split == "reverse":
        expected = [(s1, r1, o1), (o1, r2, s1)]
        problems.expect([_fact(t) for t in triples] == expected, "triples must be [(s1, r1, o1), (o1, r2, s1)]")
        problems.expect(record["prerequisites"] == [], "prerequisites must be []")
        problems.expect(_fact(e2) == (o2, r2, s1), "e2 must be (o2, r2, s1 -> s2)")
        problems.expect(record["rule"] == f"{r1}>{r2}", f"rule {record['rule']!r}, expected '{r1}>{r2}'")
    else:
        problems.expect(record["prerequisites"] == [0], "prerequisites must be [0]")
        if len(triples) != 3:
            problems.append(f"{len(triples)} triples, expected 3: k_f, (m, r1, o), (s, r2, o)")
            return
        (s, r, m), fact1, fact2 = (_fact(t) for t in triples)
        problems.expect(fact1 == (m, r1, o1) == _fact(e1), "e1 must edit triples[1] = (m, r1, o), m the object of k_f")
        problems.expect(fact2 == (s, r2, o1) == _fact(e2), "e2 must edit triples[2] = (s, r2, o), s the subject of k_f")
        problems.expect(e2["true_object"] == e1["new_object"], "e2.true_object must be e1.new_object")
        problems.expect(record["rule"] == f"{r}&{r1}>{r2}", f"rule {record['rule']!r}, expected '{r}&{r1}>{r2}'")


def relations_of(split: str, record: Mapping[str, Any]) -> list[dict[str, Any]]:
    if split in ROUND_SPLITS:
        return [record["edit"]["relation"]]
    return [t["relation"] for t in record["triples"]] + [e["relation"] for e in record["edits"]]


def prompts_file(split: str) -> str:
    return ROUND_PROMPTS if split in ROUND_SPLITS else CONFLICT_PROMPTS


def prompt_problems(
    splits: Mapping[str, Sequence[Any]], paraphrases: Mapping[str, Mapping[str, Sequence[str]]]
) -> list[str]:
    """One definition per relation id across all records; 10 distinct, clean paraphrases for each."""
    problems: set[str] = set()
    definitions: dict[str, dict[str, str]] = {}  # relation id -> {definition as JSON: where first seen}
    for split, records in splits.items():
        for index, record in enumerate(records):
            for relation in relations_of(split, record):
                rid = relation["id"]
                definitions.setdefault(rid, {}).setdefault(json.dumps(relation, sort_keys=True), f"{split}[{index}]")
                name = prompts_file(split)
                prompts = paraphrases[name].get(rid, ())
                if len(set(prompts)) != PARAPHRASES_PER_RELATION or len(prompts) != PARAPHRASES_PER_RELATION:
                    problems.add(f"{name}: {rid} needs {PARAPHRASES_PER_RELATION} distinct paraphrases")
                problems.update(f"{name}: {rid}: whitespace around {p!r}" for p in prompts if p != p.strip())
    for rid, variants in definitions.items():
        if len(variants) > 1:
            problems.add(f"relation {rid} is defined {len(variants)} ways, first in {', '.join(variants.values())}")
    return sorted(problems)


# --------------------------------------------------------------------------- building data/


def describe(split: str, record: Mapping[str, Any]) -> str:
    """A record in one line, for the manifest."""
    edits = [record["edit"]] if split in ROUND_SPLITS else record["edits"]
    return "; ".join(
        f"({e['subject']['label']}, {e['relation']['id']}, {e['object']['label']} -> {e['new_object']['label']})"
        for e in edits
    )


def group_of(split: str, record: Mapping[str, Any]) -> str:
    """What a split's cases are counted by: the rule, else the relation id."""
    if split in ROUND_SPLITS:
        return record["edit"]["relation"]["id"]
    return record.get("rule") or record["edits"][0]["relation"]["id"]


Candidates = tuple[dict[str, list[Any]], dict[str, dict[str, list[str]]], dict[str, list[Case]], list[str]]


def read_candidates(path: Path) -> Candidates:
    """The candidate records per split, the raw prompts per prompts file, the parsed cases, and
    every problem found in them (parse errors, schema, semantics, prompts)."""
    candidates = json.loads(path.read_text(encoding="utf-8"))
    records = {split: candidates[split] for split in SPLITS}
    raw_prompts = {name: candidates[name.removesuffix(".json")] for name in (CONFLICT_PROMPTS, ROUND_PROMPTS)}
    problems: list[str] = []
    try:
        prompts = {name: parse_prompts(value, f"{path} ({name})") for name, value in raw_prompts.items()}
    except DataError as exc:
        return records, raw_prompts, {}, [str(exc)]
    problems += prompt_problems(records, prompts)
    cases: dict[str, list[Case]] = {split: [] for split in SPLITS}
    for split in SPLITS:
        parse = parse_round_case if split in ROUND_SPLITS else parse_conflict_case
        for index, record in enumerate(records[split]):
            name = prompts_file(split)
            try:
                cases[split].append(parse(record, split, index, str(path), prompts[name], name))
            except DataError as exc:
                problems.append(f"{split} candidate {index}: {exc}")
                continue
            problems += [f"{split} candidate {index}: {p}" for p in shape_problems(split, record)]
    return records, raw_prompts, cases, problems


def build(candidates_path: Path, data_dir: Path, model_name: str) -> int:
    """Check every candidate, write the kept ones and the manifest, then verify data/ as --check does."""
    started = time.perf_counter()
    records, raw_prompts, cases, problems = read_candidates(candidates_path)
    if problems:
        print(f"{candidates_path} is malformed; nothing was written:", *problems, sep="\n  ", file=sys.stderr)
        return 2
    checker = load_checker(model_name)
    kept: dict[str, list[Any]] = {}
    report: dict[str, Any] = {}
    for split in SPLITS:
        kept[split], evidence, rejected = [], [], []
        verdicts = checker.knowledge.check_split(split, cases[split])
        for index, (record, case, verdict) in enumerate(zip(records[split], cases[split], verdicts)):
            if verdict.passed:
                evidence.append({"case": case_id(split, len(kept[split])), "candidate": index, **verdict.evidence})
                kept[split].append(record)
            else:
                rejected.append(
                    {"candidate": index, "edits": describe(split, record), "reason": verdict.reason, **verdict.evidence}
                )
        report[split] = {
            "file": SPLIT_FILES[split],
            "knowledge_check": SPLIT_CHECKS[split],
            "candidates": len(records[split]),
            "kept": len(kept[split]),
            "kept_by_relation": dict(Counter(group_of(split, r) for r in kept[split])),
            "rejected_by_relation": dict(Counter(group_of(split, records[split][r["candidate"]]) for r in rejected)),
            "rejected": rejected,
        }
        if split in ROUND_SPLITS:
            objects = [o for case in evidence for o in case["true_objects"]]
            top_k = checker.knowledge.top_k
            report[split]["true_objects_produced"] = f"{sum(o['rank'] < top_k for o in objects)} of {len(objects)}"
        if split == "composite" or split in ROUND_SPLITS:
            report[split]["cases"] = evidence
        print(f"{split:9s} {len(kept[split]):3d} kept of {len(records[split]):3d} candidates", flush=True)

    short = [split for split in SPLITS if len(kept[split]) < MIN_CASES_PER_SPLIT]
    if short:
        print(f"fewer than {MIN_CASES_PER_SPLIT} cases kept in {', '.join(short)}; nothing written", file=sys.stderr)
        return 1
    data_dir.mkdir(parents=True, exist_ok=True)
    for split in SPLITS:
        write_json(data_dir / SPLIT_FILES[split], kept[split])
    for name in (CONFLICT_PROMPTS, ROUND_PROMPTS):
        splits = [split for split in SPLITS if prompts_file(split) == name]
        used = dict.fromkeys(r["id"] for split in splits for record in kept[split] for r in relations_of(split, record))
        write_json(data_dir / name, {rid: raw_prompts[name][rid] for rid in used})
    manifest = {
        "model": checker.info,
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "generator": "scripts/check_builtin_suites.py",
        "candidates": display_path(candidates_path),
        "criteria": CRITERIA,
        "splits": report,
    }
    write_json(data_dir / MANIFEST, manifest)
    generated = checker.knowledge.continuations.generated
    print(f"wrote {data_dir}: {generated} prompts generated in {time.perf_counter() - started:.0f} s")
    return verify(data_dir, checker)


def display_path(path: Path) -> str:
    """``path`` relative to the repository when it lies inside it (the manifest is shipped)."""
    resolved = path.resolve()
    return str(resolved.relative_to(REPO)) if resolved.is_relative_to(REPO) else str(path)


def write_json(path: Path, value: Any) -> None:
    path.write_text(json.dumps(value, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")


# --------------------------------------------------------------------------- checking data/


def verify(data_dir: Path, checker: Checker) -> int:
    """Read data/ exactly as the plugin does and check schema and knowledge; 0 when all cases pass."""
    suite = load_suite(str(data_dir), SPLITS)
    failures: list[str] = []
    for split in SPLITS:
        entries = suite.splits.get(split, [])
        parsed = [entry for entry in entries if not isinstance(entry, DataError)]
        # An unreadable file became a single DataError; when anything parsed, the file is a JSON list.
        records = json.loads((data_dir / SPLIT_FILES[split]).read_text(encoding="utf-8")) if parsed else []
        passed = 0
        verdicts = iter(checker.knowledge.check_split(split, parsed))
        for index, entry in enumerate(entries):
            if isinstance(entry, DataError):
                failures.append(f"{split}: {entry}")
                continue
            problems = [f"{entry.case_id}: {p}" for p in shape_problems(split, records[index])]
            verdict = next(verdicts)
            if not verdict.passed:
                problems.append(f"{entry.case_id}: {verdict.reason}")
            failures += problems
            passed += not problems
        if len(parsed) < MIN_CASES_PER_SPLIT:
            failures.append(f"{split}: {len(parsed)} valid cases, at least {MIN_CASES_PER_SPLIT} expected")
        print(f"{split:9s} {passed:3d} of {len(entries):3d} cases pass", flush=True)
    if failures:
        print("FAILED:", *failures, sep="\n  ", file=sys.stderr)
        return 1
    print(f"every built-in case passes on {checker.info['name']}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument(
        "--check", action="store_true", help="re-check data/ as it is instead of rebuilding it; exit 1 on a failure"
    )
    parser.add_argument("--candidates", type=Path, default=DEFAULT_CANDIDATES, help="default: %(default)s")
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA, help="the suites folder; default: %(default)s")
    parser.add_argument("--model", default=MODEL, help="model to check against (default: %(default)s)")
    args = parser.parse_args(argv)
    if args.check:
        return verify(args.data_dir, load_checker(args.model))
    return build(args.candidates, args.data_dir, args.model)


if __name__ == "__main__":
    sys.exit(main())
