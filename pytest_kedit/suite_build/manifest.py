"""What ``kedit build-suite`` records in ``manifest.json``: the criteria in words, the model, the
source, and per source split every decision (counts, each dropped record with its reason, each
record a check kept with its evidence); for RoundEdit, how the kept cases were assigned to EASY
and HARD.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
import transformers

from pytest_kedit.benchmark.registry import ROUND_EDIT, splits_of
from pytest_kedit.dataset.sources import SPLIT_FILES
from pytest_kedit.suite_build.knowledge_check import criteria

if TYPE_CHECKING:
    from pytest_kedit.model.loading import LoadedModel
    from pytest_kedit.suite_build.source import SourceSplit

MANIFEST = "manifest.json"
#: The manifest's ``generator``; a folder whose manifest names it is an earlier build.
GENERATOR = "kedit build-suite"
#: The RoundEdit splits, whose kept cases are pooled and split again by closeness (unless --keep-splits).
ROUND_SPLITS = splits_of(ROUND_EDIT)

SPLIT_CHECKS = {
    "coverage": "none: every valid record is copied; the protocol needs no knowledge of the model",
    "reverse": "none: every valid record is copied; the protocol needs no knowledge of the model",
    "composite": "the tied fact k_f = triples[prerequisites[0]] is known on its relation's edit prompt",
    "easy": (
        "the round-edited object o1 = edit.object is produced (first token in the top_k after the relation's "
        "edit prompt or one of its paraphrases) and preferred to the target: p(s, r, o1) > p(s, r, o*)"
    ),
}
SPLIT_CHECKS["hard"] = SPLIT_CHECKS["easy"]
SPLIT_CHECKS["sequential"] = (
    "each stream keeps, in order, its edits whose old object is produced and preferred to the new one (on the edit "
    "prompt and over the paraphrases), their neighbourhood facts whose true object is produced and preferred to the "
    "edit's new one, and its locality facts whose object is produced; a stream without an edit or a locality fact "
    "left is dropped"
)
CLOSENESS = (
    "closeness = ln p(o*) - (1/|Obj|) * sum over o in Obj of ln p(o), where o* = edit.new_object, "
    "Obj = true_objects, and p(o) is the benchmark's probe p(s, r, o): the geometric mean of the token "
    "probabilities of ' ' + o under teacher forcing, averaged over the relation's edit prompt and its "
    "paraphrases filled with the subject"
)
RESPLIT = (
    "the kept cases of the source's easy and hard files are pooled (easy first, each in source order); "
    "a case goes to EASY when its closeness is at least the median closeness of the pool, else to HARD; "
    "each output file keeps pool order"
)
KEPT_SPLITS = (
    "--keep-splits: the kept cases of the source's easy and hard files stay in their file, in source order "
    "(the source's assignment is hand-chosen); closeness is recorded, not used"
)


def criteria_info(splits: Sequence[str], max_new_tokens: int, top_k: int, keep_splits: bool,
                  stream_edits: int | None = None) -> dict[str, Any]:
    """The manifest's ``criteria``: the checks in words, their parameters (``stream_edits`` when a
    stream is built), and the EASY/HARD rule."""
    round_splits: dict[str, str] = {}
    if set(ROUND_SPLITS) & set(splits):
        round_splits = {"closeness": CLOSENESS, "resplit": KEPT_SPLITS if keep_splits else RESPLIT}
    return {
        "knowledge_check": {name: text for name, text in criteria(max_new_tokens, top_k).items()
                            if name != "stream" or "sequential" in splits},
        "splits": {split: SPLIT_CHECKS[split] for split in splits},
        "parameters": {"max_new_tokens": max_new_tokens, "top_k": top_k,
                       **({"stream_edits": stream_edits} if "sequential" in splits else {})},
        **round_splits,
    }


def model_info(loaded: LoadedModel) -> dict[str, str]:
    """The manifest's ``model``: what identifies the weights and the numerics, not where they lie."""
    return {
        "name": loaded.name,
        "fingerprint": loaded.fingerprint,
        "dtype": str(loaded.dtype).removeprefix("torch."),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
    }


def source_info(spec: str, folder: Path, sources: Mapping[str, SourceSplit]) -> dict[str, Any]:
    """The manifest's ``source``: as given, its folder, and per split its file, size and fingerprint."""
    return {
        "spec": spec,
        "path": str(folder),
        "splits": {
            split: {"file": SPLIT_FILES[split], "records": len(s.records), "fingerprint": s.fingerprint}
            for split, s in sources.items()
        },
    }


def split_report(split: str, made: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Counts of one source split's decisions, overall and per relation; every dropped record with
    its reason and evidence; every kept record that a check passed, with its evidence."""
    by_relation: dict[str, dict[str, int]] = {}
    for d in made:
        counts = by_relation.setdefault(d["group"], {"kept": 0, "dropped": 0})
        counts["kept" if d["kept"] else "dropped"] += 1
    kept = sum(d["kept"] for d in made)
    return {
        "file": SPLIT_FILES[split],
        "knowledge_check": SPLIT_CHECKS[split],
        "source_records": len(made),
        "kept": kept,
        "dropped": len(made) - kept,
        "by_relation": dict(sorted(by_relation.items())),
        "dropped_records": [
            {"index": d["index"], "group": d["group"], "reason": d["reason"], **d["evidence"]}
            for d in made
            if not d["kept"]
        ],
        "kept_records": [
            {"index": d["index"], "group": d["group"], **d["evidence"], **_closeness(d)}
            for d in made
            if d["kept"] and d["evidence"]
        ],
    }


def _closeness(decision: Mapping[str, Any]) -> dict[str, float]:
    return {"closeness": decision["closeness"]} if "closeness" in decision else {}


def resplit_report(
    resplit: Mapping[str, Sequence[tuple[str, int, float]]],
    threshold: float | None,
    decisions: Mapping[str, Mapping[int, dict[str, Any]]],
) -> dict[str, Any]:
    """The re-split of the pooled RoundEdit cases: threshold, and per output split its cases by
    relation, by source split, and one line per case (its evidence is in the source split's
    ``kept_records``)."""
    report: dict[str, Any] = {"threshold": threshold}
    for split, entries in resplit.items():
        report[split] = {
            "cases": len(entries),
            "by_relation": dict(sorted(Counter(decisions[o][i]["group"] for o, i, _ in entries).items())),
            "from_source": {origin: sum(o == origin for o, _, _ in entries) for origin in ROUND_SPLITS},
            "records": [{"source": o, "index": i, "closeness": c} for o, i, c in entries],
        }
    return report
