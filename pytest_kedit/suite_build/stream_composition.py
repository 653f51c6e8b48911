"""``kedit compose-stream``: a stream of edits composed from a folder's ConflictEdit and RoundEdit
files, the source of streams longer than the built-in one (the published files have none).

From the valid records of the source's split files (:func:`compose_stream`, pure):

- **edits**: each record's first edit (a ConflictEdit record's ``edits[0]``, a RoundEdit
  record's ``edit``), in split then file order, the first for each (subject, relation) only,
  then shuffled with the seed and cut to the first ``edits``;
- **facts**: the (subject, relation, object) of every ConflictEdit triple and edit whose subject
  and relation have that one object in all the files (RoundEdit's relations have several true
  objects, so it gives none);
- **neighbourhood** of an edit (s, r, o → o*): the subjects of up to :data:`NEIGHBOURS` facts
  (s', r, o), s' ≠ s, that no edit changes, in label order;
- **locality**: ``locality`` facts no edit changes, drawn with the seed;
- **held_out**: the texts given (``kedit compose-stream`` gives the built-in stream's, prose
  written for this project: the published files have no free text);
- the paraphrases of every relation used, from the source's paraphrase files
  (``sequential_prompts.json``).

Relations without paraphrases in the source are left out. The stream is a candidate: ``kedit
build-suite --splits sequential`` then keeps, for one model, the edits, neighbours and locality
facts that model knows.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from pytest_kedit.benchmark.registry import PAPER_BENCHMARKS, SEQUENTIAL, splits_of
from pytest_kedit.dataset.sources import SPLIT_FILES, builtin_folder, load_suite
from pytest_kedit.dataset.validation import json_value, read_bytes, split_records
from pytest_kedit.errors import DataError, KeditError
from pytest_kedit.storage.atomic import atomic_write_text
from pytest_kedit.suite_build.source import JSON_LAYOUTS

#: Neighbourhood facts per edit, at most.
NEIGHBOURS = 2
#: Locality facts of a composed stream, by default.
LOCALITY = 100

Key = tuple[str, str]  # (subject label, relation id)


def compose_stream(
    records: Mapping[str, Sequence[Mapping[str, Any]]],
    paraphrases: Mapping[str, Sequence[str]],
    held_out: Sequence[str],
    seed: int = 0,
    edits: int | None = None,
    locality: int = LOCALITY,
) -> dict[str, Any]:
    """The ``sequential.json`` record of a stream composed (see the module docstring) from the
    valid ``records`` of each split (split name -> records in file order, split names in registry
    order), with ``paraphrases`` by relation id; KeditError when no edit or no locality fact is
    left."""
    objects: dict[Key, set[str]] = {}
    first_fact: dict[Key, Mapping[str, Any]] = {}
    candidates: dict[Key, Mapping[str, Any]] = {}
    for split_records_ in records.values():
        for record in split_records_:
            if "edits" in record:
                for fact in [*record["triples"], *record["edits"]]:
                    key = _key(fact)
                    objects.setdefault(key, set()).add(fact["object"]["label"])
                    first_fact.setdefault(key, fact)
            edit = record["edits"][0] if "edits" in record else record["edit"]
            key = _key(edit)
            if edit["relation"]["id"] in paraphrases and edit["new_object"]["label"] != edit["object"]["label"]:
                candidates.setdefault(key, edit)
    order = list(candidates)
    random.Random(seed).shuffle(order)
    chosen = order[:edits]
    edited = set(chosen)
    facts = {key: first_fact[key] for key, found in objects.items() if len(found) == 1 and key not in edited and key[1] in paraphrases}
    subjects_by_object: dict[tuple[str, str], list[Mapping[str, Any]]] = {}
    for key in sorted(facts):
        fact = facts[key]
        subjects_by_object.setdefault((key[1], fact["object"]["label"]), []).append(fact["subject"])
    stream_edits = []
    for key in chosen:
        edit = candidates[key]
        others = [s for s in subjects_by_object.get((key[1], edit["object"]["label"]), []) if s["label"] != key[0]]
        stream_edits.append({**{k: edit[k] for k in ("relation", "subject", "object", "new_object")}, "neighbourhood": others[:NEIGHBOURS]})
    pool = sorted(facts)
    kept = sorted(random.Random(seed).sample(pool, min(locality, len(pool))))
    if not stream_edits or not kept:
        raise KeditError(f"the source gives {len(stream_edits)} edits and {len(kept)} locality facts: a stream needs at least one of each")
    return {
        "type": "sequential",
        "edits": stream_edits,
        "locality": [{k: facts[key][k] for k in ("relation", "subject", "object")} for key in kept],
        "held_out": list(held_out),
    }


def _key(fact: Mapping[str, Any]) -> Key:
    return (fact["subject"]["label"], fact["relation"]["id"])


def compose_from_folder(folder: Path, out: Path, seed: int = 0, edits: int | None = None, locality: int = LOCALITY) -> dict[str, Any]:
    """Compose the stream of ``folder``'s valid ConflictEdit and RoundEdit records and write it to
    ``out`` as ``sequential.json`` and ``sequential_prompts.json``; the record written."""
    splits = [split for benchmark in PAPER_BENCHMARKS for split in splits_of(benchmark) if (folder / SPLIT_FILES[split]).is_file()]
    if not splits:
        files = ", ".join(SPLIT_FILES[split] for benchmark in PAPER_BENCHMARKS for split in splits_of(benchmark))
        raise KeditError(f"--from: {folder} has none of the ConflictEdit and RoundEdit files ({files})")
    suite = load_suite(str(folder), splits)
    records = {}
    for split in splits:
        path = folder / SPLIT_FILES[split]
        raw = split_records(path, read_bytes(path))
        records[split] = [raw[entry.index] for entry in suite.splits[split] if not isinstance(entry, DataError)]
    paraphrases: dict[str, list[str]] = {}
    for benchmark in PAPER_BENCHMARKS:
        path = folder / benchmark.prompts_file
        if path.is_file():
            for relation, prompts in json_value(path, read_bytes(path)).items():
                paraphrases.setdefault(relation, prompts)
    (builtin,) = split_records(builtin_folder() / SPLIT_FILES["sequential"], read_bytes(builtin_folder() / SPLIT_FILES["sequential"]))
    record = compose_stream(records, paraphrases, builtin["held_out"], seed, edits, locality)
    used = {item["relation"]["id"] for item in [*record["edits"], *record["locality"]]}
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / SPLIT_FILES["sequential"], JSON_LAYOUTS["indented"]([record]))
    atomic_write_text(out / SEQUENTIAL.prompts_file, JSON_LAYOUTS["indented"]({r: paraphrases[r] for r in sorted(used)}))
    return record
