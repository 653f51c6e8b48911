"""``kedit build-suite``: a source's cases re-filtered for one model, as the paper filtered per model.

The published files were filtered for the model they were run on (Appendix A.1.1 step 3, A.1.2
step 2). Built for another model, a suite keeps what the protocols need that model to know:

* coverage, reverse: every valid record is copied (the protocol needs no knowledge of the model);
* composite: kept when the tied fact passes the knowledge check (:mod:`pytest_kedit.knowledge_check`);
* easy, hard: kept when o1 passes the knowledge check (produced after the edit prompt or a
  paraphrase, and preferred to the target). The kept cases of both source splits are
  pooled and split again by closeness, the log-ratio of the target's probability to the true
  objects' under this model: ``ln p(o*) - mean over o in Obj of ln p(o)``, with p(s, r, o) the
  benchmark's probe averaged over the edit prompt and its paraphrases. EASY holds the pooled
  cases whose closeness is at least the median, HARD the others: the paper's EASY targets are
  semantically associated with the true labels, HARD ones far from them, and the model's answer
  distribution for (s, r) is where that association shows.

A record that does not parse is dropped with its error. The output folder holds the five split
files (kept records verbatim, in source order, written as ``json.dumps`` writes them, like the
upstream files), the source's paraphrase files, and ``manifest.json``. Each decision is appended
to ``checkpoint-<split>.jsonl`` as it is made; a rerun skips decided records, and a checkpoint
written with another model, source or parameters is an error.
"""

from __future__ import annotations

import json
import math
import statistics
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import transformers
from tqdm.auto import tqdm

from .cache import atomic_write_bytes, atomic_write_text
from .cases import CONFLICT_SPLITS, ROUND_SPLITS, SPLITS, Case, RoundCase
from .checkpoint import Checkpoint
from .datasets import CONFLICT_PROMPTS, ROUND_PROMPTS, SPLIT_FILES, Entry, load_suite, resolve_source
from .errors import ConfigError, DataError, KeditError
from .knowledge_check import MAX_NEW_TOKENS, TOP_K, KnowledgeCheck, Verdict, criteria
from .models import LoadedModel

#: Bumped whenever a decision rule changes, so that old checkpoints are not resumed.
FORMAT = "kedit-build-suite/2"
MANIFEST = "manifest.json"
CHECKPOINT = "checkpoint-{}.jsonl"

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


@dataclass(frozen=True)
class BuildSettings:
    """The parameters of a build; ``limit`` takes the first records of each source split."""

    max_new_tokens: int = MAX_NEW_TOKENS
    top_k: int = TOP_K
    batch_size: int = 32
    limit: int | None = None


@dataclass
class SourceSplit:
    """One split of the source: its raw records (written verbatim) and their parsed entries."""

    split: str
    records: list[Any]
    entries: list[Entry]
    fingerprint: str


def build_suite(
    loaded: LoadedModel,
    source: str,
    out: Path,
    splits: Sequence[str] = SPLITS,
    settings: BuildSettings = BuildSettings(),
    progress: bool = True,
) -> dict[str, Any]:
    """Decide every case of ``splits`` in ``source`` for ``loaded``, write the suite to ``out``,
    and return its manifest.

    ``source`` is a folder in the upstream layout, ``upstream:NAME`` or ``builtin``.
    """
    folder = check_request(source, out, splits)
    splits = [split for split in SPLITS if split in splits]
    sources = {split: read_source(folder, split) for split in splits}
    decisions: dict[str, dict[int, dict[str, Any]]] = {}
    for split in splits:
        checkpoint = Checkpoint(out / CHECKPOINT.format(split), _header(split, loaded, sources[split], settings))
        decisions[split] = _decide_split(sources[split], checkpoint, loaded, settings, progress)
    files, report = _assemble(sources, decisions, settings.limit)
    for split, records in files.items():
        atomic_write_text(out / SPLIT_FILES[split], json.dumps(records))
    for name in dict.fromkeys(CONFLICT_PROMPTS if s in CONFLICT_SPLITS else ROUND_PROMPTS for s in splits):
        atomic_write_bytes(out / name, (folder / name).read_bytes())
    manifest = {
        "generator": "kedit build-suite",
        "format": FORMAT,
        "model": _model_info(loaded),
        "source": _source_info(source, folder, sources),
        "limit": settings.limit,
        "criteria": _criteria(splits, settings),
        **report,
    }
    atomic_write_text(out / MANIFEST, json.dumps(manifest, ensure_ascii=False, indent=2) + "\n")
    return manifest


def check_request(source: str, out: Path, splits: Sequence[str]) -> Path:
    """The source folder, once ``splits``, ``source`` and ``out`` are known to be usable (before any
    model is loaded); KeditError otherwise."""
    check_splits(splits)
    folder = _resolve(source)
    check_output_folder(out, folder)
    return folder


def check_splits(splits: Sequence[str]) -> None:
    """Raise ConfigError unless ``splits`` is a non-empty list of known splits with easy and hard together."""
    unknown = [s for s in splits if s not in SPLITS]
    if unknown or not splits:
        raise ConfigError(f"--splits: unknown or empty {unknown or list(splits)}; choose from {', '.join(SPLITS)}")
    if len(set(ROUND_SPLITS) & set(splits)) == 1:
        raise ConfigError("--splits: easy and hard are split again from their pooled cases; ask for both or neither")


def _resolve(source: str) -> Path:
    try:
        return resolve_source(None if source == "builtin" else source)
    except ConfigError as exc:
        raise ConfigError(f"--from: {str(exc).removeprefix('--kedit-data: ')}") from None


def check_output_folder(out: Path, source: Path) -> None:
    """Raise KeditError unless ``out`` is new, empty, or holds an earlier build (never the source)."""
    if out.exists() and not out.is_dir():
        raise KeditError(f"--out: {out} is a file, not a folder")
    if out.exists() and out.resolve() == source.resolve():
        raise KeditError(f"--out: {out} is the source folder; write the suite to another folder")
    if out.is_dir() and any(out.iterdir()) and not any(out.glob(CHECKPOINT.format("*"))):
        raise KeditError(f"--out: {out} is not empty and holds no earlier build (no {CHECKPOINT.format('*')}); use a new folder")


def read_source(folder: Path, split: str) -> SourceSplit:
    """The raw records and parsed entries of one split; KeditError when its file is missing or unreadable."""
    path = folder / SPLIT_FILES[split]
    if not path.is_file():
        raise KeditError(f"--from: {folder} has no {SPLIT_FILES[split]} (split {split!r})")
    suite = load_suite(str(folder), [split])
    entries = suite.splits[split]
    if len(entries) == 1 and isinstance(entries[0], DataError) and entries[0].record is None:
        raise entries[0]
    return SourceSplit(split, json.loads(path.read_bytes()), entries, suite.fingerprint)


def _header(split: str, loaded: LoadedModel, source: SourceSplit, settings: BuildSettings) -> dict[str, Any]:
    """What a split's decisions depend on: resuming requires the same values."""
    return {
        "format": FORMAT,
        "split": split,
        "model": loaded.fingerprint,
        "dtype": str(loaded.dtype).removeprefix("torch."),
        "source": source.fingerprint,
        "max_new_tokens": settings.max_new_tokens,
        "top_k": settings.top_k,
    }


def _source_info(source: str, folder: Path, sources: Mapping[str, SourceSplit]) -> dict[str, Any]:
    return {
        "spec": source,
        "path": str(folder),
        "splits": {
            split: {"file": SPLIT_FILES[split], "records": len(s.records), "fingerprint": s.fingerprint}
            for split, s in sources.items()
        },
    }


def _criteria(splits: Sequence[str], settings: BuildSettings) -> dict[str, Any]:
    round_splits = {"closeness": CLOSENESS, "resplit": RESPLIT} if ROUND_SPLITS[0] in splits else {}
    return {
        "knowledge_check": criteria(settings.max_new_tokens, settings.top_k),
        "splits": {split: SPLIT_CHECKS[split] for split in splits},
        "parameters": {"max_new_tokens": settings.max_new_tokens, "top_k": settings.top_k},
        **round_splits,
    }


def _model_info(loaded: LoadedModel) -> dict[str, str]:
    return {
        "name": loaded.name,
        "fingerprint": loaded.fingerprint,
        "source": loaded.source,
        "dtype": str(loaded.dtype).removeprefix("torch."),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
    }


# --------------------------------------------------------------------------- deciding


def _chunks(total: int, size: int, needed: int) -> Iterator[range]:
    """The batches of record indices that cover the first ``needed`` of ``total`` records.

    Batches are fixed slices of the whole file, whatever the limit and whatever was decided
    before, so every record is decided in the same batch at every run: batch composition
    changes padding, hence float rounding, hence (rarely) a greedy token or a stored probability.
    """
    for start in range(0, needed, size):
        yield range(start, min(start + size, total))


def _decide_split(
    source: SourceSplit, checkpoint: Checkpoint, loaded: LoadedModel, settings: BuildSettings, progress: bool
) -> dict[int, dict[str, Any]]:
    """Every decision of the split's first ``limit`` records (and of the rest of their last batch):
    read from the checkpoint, or made batch by batch and appended to it.

    A batch with any undecided record is decided whole, for the reason given in ``_chunks``; only
    its undecided records are appended.
    """
    decided = checkpoint.open()
    total = len(source.entries)
    n = total if settings.limit is None else min(settings.limit, total)
    with tqdm(total=n, initial=sum(i < n for i in decided), desc=source.split, unit="case", disable=not progress) as bar:
        for chunk in _chunks(total, settings.batch_size, n):
            pending = [i for i in chunk if i not in decided]
            if not pending:
                continue
            made = _decide_batch(loaded, settings, source.split, [(i, source.entries[i]) for i in chunk])
            new = [d for d in made if d["index"] not in decided]
            checkpoint.append(new)
            decided.update((d["index"], d) for d in new)
            bar.update(sum(i < n for i in pending))
    return decided


def _decide_batch(
    loaded: LoadedModel, settings: BuildSettings, split: str, entries: Sequence[tuple[int, Entry]]
) -> list[dict[str, Any]]:
    """One decision per entry, in order: ``{"index", "group", "kept", "reason", "evidence"}``
    (RoundEdit cases that are kept add ``closeness``).

    Nothing is shared between calls: a decision then depends on its batch only, and the batch of a
    record is the same at every run.
    """
    cases = [(i, e) for i, e in entries if not isinstance(e, DataError)]
    check = KnowledgeCheck(loaded.model, loaded.tokenizer, settings.max_new_tokens, settings.top_k, settings.batch_size)
    verdicts = check.check_split(split, [c for _, c in cases])
    decisions = {i: _decision(i, case, verdict) for (i, case), verdict in zip(cases, verdicts)}
    for index, entry in entries:
        if isinstance(entry, DataError):
            reason = f"invalid record: {entry}"
            decisions[index] = {"index": index, "group": "(invalid)", "kept": False, "reason": reason, "evidence": {}}
    return [decisions[index] for index, _ in entries]


def closeness(p_true: Sequence[float], p_target: float) -> float:
    """ln p(o*) - mean over the true objects of ln p(o)."""
    return math.log(p_target) - statistics.fmean(math.log(p) for p in p_true)


def _decision(index: int, case: Case, verdict: Verdict) -> dict[str, Any]:
    decision: dict[str, Any] = {"index": index, "group": case.relation, "kept": verdict.passed}
    if not verdict.passed:
        decision["reason"] = verdict.reason
    decision["evidence"] = verdict.evidence
    if verdict.passed and isinstance(case, RoundCase):
        decision["closeness"] = closeness(verdict.evidence["p_true"], verdict.evidence["p_target"])
    return decision


# --------------------------------------------------------------------------- the output


def _assemble(
    sources: Mapping[str, SourceSplit], decisions: Mapping[str, Mapping[int, dict[str, Any]]], limit: int | None
) -> tuple[dict[str, list[Any]], dict[str, Any]]:
    """The records of each output file, and the manifest's counts: per source split and, for
    RoundEdit, per output split after the re-split."""
    files: dict[str, list[Any]] = {}
    report: dict[str, Any] = {"splits": {}}
    pool: list[tuple[str, int, float]] = []
    for split, source in sources.items():
        n = len(source.records) if limit is None else min(limit, len(source.records))
        made = [decisions[split][i] for i in range(n)]
        report["splits"][split] = _split_report(split, made)
        kept = [d["index"] for d in made if d["kept"]]
        if split in ROUND_SPLITS:
            pool += [(split, d["index"], d["closeness"]) for d in made if d["kept"]]
        else:
            files[split] = [source.records[i] for i in kept]
    if ROUND_SPLITS[0] in sources:
        threshold = statistics.median(c for _, _, c in pool) if pool else None
        resplit = {
            "easy": [entry for entry in pool if threshold is not None and entry[2] >= threshold],
            "hard": [entry for entry in pool if threshold is None or entry[2] < threshold],
        }
        for split, entries in resplit.items():
            files[split] = [sources[origin].records[i] for origin, i, _ in entries]
        report["round_resplit"] = _resplit_report(resplit, threshold, decisions)
    return files, report


def _split_report(split: str, made: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Counts of one source split's decisions, overall and per relation, and every dropped record."""
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
            {"index": d["index"], "group": d["group"], "reason": d["reason"], **d["evidence"]} for d in made if not d["kept"]
        ],
    }


def _resplit_report(
    resplit: Mapping[str, Sequence[tuple[str, int, float]]],
    threshold: float | None,
    decisions: Mapping[str, Mapping[int, dict[str, Any]]],
) -> dict[str, Any]:
    """The re-split of the pooled RoundEdit cases: threshold, and per output split its cases by
    relation, by source split, and one line per case."""
    report: dict[str, Any] = {"threshold": threshold}
    for split, entries in resplit.items():
        report[split] = {
            "cases": len(entries),
            "by_relation": dict(sorted(Counter(decisions[o][i]["group"] for o, i, _ in entries).items())),
            "from_source": {origin: sum(o == origin for o, _, _ in entries) for origin in ROUND_SPLITS},
            "records": [
                {"source": o, "index": i, "closeness": c, "p_target": decisions[o][i]["evidence"]["p_target"],
                 "p_true": decisions[o][i]["evidence"]["p_true"]}
                for o, i, c in entries
            ],
        }
    return report
