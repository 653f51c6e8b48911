"""``kedit build-suite``: a source's cases re-filtered for one model, as the paper filtered per model.

The published files were filtered for the model they were run on (Appendix A.1.1 step 3, A.1.2
step 2). Built for another model, a suite keeps what the plans need that model to know:

* coverage, reverse: every valid record is copied (the plan needs no knowledge of the model);
* composite: kept when the tied fact passes the knowledge check (:mod:`pytest_kedit.suite_build.knowledge_check`);
* easy, hard: kept when o1 passes the knowledge check (produced after the edit prompt or a
  paraphrase, and preferred to the target).
* sequential: each stream keeps the edits, neighbourhood facts and locality facts that pass the
  knowledge check, in order (with ``stream_edits``, at most the first that many edits); a stream
  left without an edit or a locality fact is dropped. The kept cases of both source splits are
  pooled and split again by closeness, the log-ratio of the target's probability to the true
  objects' under this model: ``ln p(o*) - mean over o in Obj of ln p(o)``, with p(s, r, o) the
  benchmark's probe averaged over the edit prompt and its paraphrases. EASY holds the pooled
  cases whose closeness is at least the median, HARD the others: the paper's EASY targets are
  semantically associated with the true labels, HARD ones far from them, and the model's answer
  distribution for (s, r) is where that association shows. With ``keep_splits`` (hand-chosen
  cases, such as the built-in suites') the kept cases stay in their source split instead.

A record that does not parse is dropped with its error. The output folder holds the split files
(kept records verbatim, a stream with only what it keeps, in source order, in the JSON layout of
their source file), the
source's paraphrase files, and ``manifest.json`` (:mod:`pytest_kedit.suite_build.manifest`). Each
decision is appended to its split's decision log (``checkpoint-<split>.jsonl``) as it is made; a
rerun skips decided records, and a log written with another model, source or parameters is an error.
"""

from __future__ import annotations

import json
import math
import statistics
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pytest_kedit.benchmark.cases import Case, RoundCase
from pytest_kedit.benchmark.registry import SEQUENTIAL, SPLIT_NAMES, SPLITS, check_splits
from pytest_kedit.dataset.sources import SPLIT_FILES, Entry, resolve_source
from pytest_kedit.errors import ConfigError, DataError, KeditError
from pytest_kedit.model.loading import LoadedModel
from pytest_kedit.storage.atomic import atomic_write_bytes, atomic_write_text
from pytest_kedit.storage.progress import progress_bar
from pytest_kedit.suite_build.decision_log import DecisionLog
from pytest_kedit.suite_build.knowledge_check import MAX_NEW_TOKENS, PRODUCED_TOP_K, KnowledgeCheck, KnowledgeVerdict, kept_stream
from pytest_kedit.suite_build.manifest import (
    GENERATOR,
    MANIFEST,
    ROUND_SPLITS,
    criteria_info,
    model_info,
    resplit_report,
    source_info,
    split_report,
)
from pytest_kedit.suite_build.source import JSON_LAYOUTS, SourceSplit, read_source

#: The manifest's and the decision logs' format: bumped whenever a decision rule changes, so that
#: older decision logs are not resumed.
BUILD_FORMAT = "kedit-build-suite/2"
#: The file name of a split's decision log (:class:`~pytest_kedit.suite_build.decision_log.DecisionLog`).
DECISION_LOG = "checkpoint-{}.jsonl"
@dataclass(frozen=True)
class BuildSettings:
    """The parameters of a build; ``limit`` takes the first records of each source split,
    ``keep_splits`` keeps each kept RoundEdit case in its source split instead of re-splitting,
    and ``stream_edits`` keeps at most that many edits of each stream (the first that pass)."""

    max_new_tokens: int = MAX_NEW_TOKENS
    top_k: int = PRODUCED_TOP_K
    batch_size: int = 32
    limit: int | None = None
    keep_splits: bool = False
    stream_edits: int | None = None


def build_suite(
    loaded: LoadedModel,
    source: str,
    out: Path,
    splits: Sequence[str] | None = None,
    settings: BuildSettings = BuildSettings(),
    progress: bool = True,
) -> dict[str, Any]:
    """Decide every case of ``splits`` (None: every split whose file ``source`` has) in ``source``
    for ``loaded``, write the suite to ``out``, and return its manifest.

    ``source`` is a folder in the upstream layout, ``upstream:NAME`` or ``builtin``.
    """
    folder, splits = check_request(source, out, splits, settings.keep_splits)
    sources = {split: read_source(folder, split) for split in splits}
    decisions: dict[str, dict[int, dict[str, Any]]] = {}
    for split in splits:
        log = DecisionLog(out / DECISION_LOG.format(split), _header(split, loaded, sources[split], settings))
        decisions[split] = _decide_split(sources[split], log, loaded, settings, progress)
    files, report = _assemble(sources, decisions, settings)
    for split, records in files.items():
        atomic_write_text(out / SPLIT_FILES[split], JSON_LAYOUTS[sources[split].layout](records))
    for name in dict.fromkeys(SPLITS[s].benchmark.prompts_file for s in splits):
        atomic_write_bytes(out / name, (folder / name).read_bytes())
    manifest = {
        "generator": GENERATOR,
        "format": BUILD_FORMAT,
        "model": model_info(loaded),
        "source": source_info(source, folder, sources),
        "limit": settings.limit,
        "criteria": criteria_info(splits, settings.max_new_tokens, settings.top_k, settings.keep_splits,
                                  settings.stream_edits),
        **report,
    }
    atomic_write_text(out / MANIFEST, JSON_LAYOUTS["indented"](manifest))
    return manifest


def check_request(source: str, out: Path, splits: Sequence[str] | None,
                  keep_splits: bool = False) -> tuple[Path, list[str]]:
    """The source folder and the splits to build, in registry order, once ``splits`` (known splits;
    None: every split whose file the source has; easy and hard together when they are to be split
    again), ``source`` and ``out`` are known to be usable (before any model is loaded); KeditError
    otherwise."""
    if splits is not None:
        check_splits(splits, "--splits")
    folder = resolve_source(None if source == "builtin" else source, option="--from")
    if splits is None:
        splits = [split for split in SPLIT_NAMES if (folder / SPLIT_FILES[split]).is_file()]
    if len(set(ROUND_SPLITS) & set(splits)) == 1 and not keep_splits:
        raise ConfigError(
            "--splits: easy and hard are split again from their pooled cases; ask for both or neither, "
            "or add --keep-splits"
        )
    check_output_folder(out, folder)
    return folder, [split for split in SPLITS if split in splits]


def check_output_folder(out: Path, source: Path) -> None:
    """Raise KeditError unless ``out`` is new, empty, or holds an earlier build (never the source).

    An earlier build has decision logs, or a manifest written by this command (``data/`` keeps no
    decision logs)."""
    if out.exists() and not out.is_dir():
        raise KeditError(f"--out: {out} is a file, not a folder")
    if out.exists() and out.resolve() == source.resolve():
        raise KeditError(f"--out: {out} is the source folder; write the suite to another folder")
    if out.is_dir() and any(out.iterdir()) and not (any(out.glob(DECISION_LOG.format("*"))) or _built_here(out)):
        raise KeditError(
            f"--out: {out} is not empty and holds no earlier build (no {DECISION_LOG.format('*')}, "
            f"no {MANIFEST} by {GENERATOR}); use a new folder"
        )


def _built_here(folder: Path) -> bool:
    """Whether ``folder`` holds a manifest written by ``kedit build-suite``."""
    try:
        manifest = json.loads((folder / MANIFEST).read_bytes())
    except (OSError, ValueError):
        return False
    return isinstance(manifest, dict) and manifest.get("generator") == GENERATOR


def _header(split: str, loaded: LoadedModel, source: SourceSplit, settings: BuildSettings) -> dict[str, Any]:
    """What a split's decisions depend on: resuming requires the same values."""
    return {
        "format": BUILD_FORMAT,
        "split": split,
        "model": loaded.fingerprint,
        "dtype": str(loaded.dtype).removeprefix("torch."),
        "source": source.fingerprint,
        "max_new_tokens": settings.max_new_tokens,
        "top_k": settings.top_k,
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
    source: SourceSplit, log: DecisionLog, loaded: LoadedModel, settings: BuildSettings, progress: bool
) -> dict[int, dict[str, Any]]:
    """Every decision of the split's first ``limit`` records (and of the rest of their last batch):
    read from the decision log, or made batch by batch and appended to it.

    A batch with any undecided record is decided whole, for the reason given in ``_chunks``; only
    its undecided records are appended.
    """
    decided = log.open()
    total = len(source.entries)
    n = total if settings.limit is None else min(settings.limit, total)
    done = sum(i < n for i in decided)
    with progress_bar(n, initial=done, desc=source.split, unit="case", disable=not progress) as bar:
        for chunk in _chunks(total, settings.batch_size, n):
            pending = [i for i in chunk if i not in decided]
            if not pending:
                continue
            made = _decide_batch(loaded, settings, source.split, [(i, source.entries[i]) for i in chunk])
            new = [d for d in made if d["index"] not in decided]
            log.append(new)
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
    decisions = {i: _decision(i, case, verdict) for (i, case), verdict in zip(cases, verdicts, strict=True)}
    for index, entry in entries:
        if isinstance(entry, DataError):
            reason = f"invalid record: {entry}"
            decisions[index] = {"index": index, "group": "(invalid)", "kept": False, "reason": reason, "evidence": {}}
    return [decisions[index] for index, _ in entries]


def closeness(p_true: Sequence[float], p_target: float) -> float:
    """ln p(o*) - mean over the true objects of ln p(o)."""
    return math.log(p_target) - statistics.fmean(math.log(p) for p in p_true)


def _decision(index: int, case: Case, verdict: KnowledgeVerdict) -> dict[str, Any]:
    decision: dict[str, Any] = {"index": index, "group": case.relation_group, "kept": verdict.passed}
    if not verdict.passed:
        decision["reason"] = verdict.reason
    decision["evidence"] = verdict.evidence
    if verdict.passed and isinstance(case, RoundCase):
        decision["closeness"] = closeness(verdict.evidence["p_true"], verdict.evidence["p_target"])
    return decision


# --------------------------------------------------------------------------- the output


def _assemble(
    sources: Mapping[str, SourceSplit], decisions: Mapping[str, Mapping[int, dict[str, Any]]], settings: BuildSettings
) -> tuple[dict[str, list[Any]], dict[str, Any]]:
    """The records of each output file, and the manifest's reports: per source split and, for a
    RoundEdit re-split, per output split."""
    files: dict[str, list[Any]] = {}
    report: dict[str, Any] = {"splits": {}}
    pool: list[tuple[str, int, float]] = []
    for split, source in sources.items():
        n = len(source.records) if settings.limit is None else min(settings.limit, len(source.records))
        made = [decisions[split][i] for i in range(n)]
        report["splits"][split] = split_report(split, made)
        kept = [d["index"] for d in made if d["kept"]]
        if split in ROUND_SPLITS and not settings.keep_splits:
            pool += [(split, d["index"], d["closeness"]) for d in made if d["kept"]]
        elif SPLITS[split].benchmark is SEQUENTIAL:
            files[split] = [kept_stream(source.records[i], decisions[split][i]["evidence"], settings.stream_edits) for i in kept]
        else:
            files[split] = [source.records[i] for i in kept]
    if ROUND_SPLITS[0] in sources and not settings.keep_splits:
        threshold = statistics.median(c for _, _, c in pool) if pool else None
        resplit = {
            "easy": [entry for entry in pool if threshold is not None and entry[2] >= threshold],
            "hard": [entry for entry in pool if threshold is None or entry[2] < threshold],
        }
        for split, entries in resplit.items():
            files[split] = [sources[origin].records[i] for origin, i, _ in entries]
        report["round_resplit"] = resplit_report(resplit, threshold, decisions)
    return files, report
