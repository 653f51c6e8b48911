"""Where cases come from: the built-in suites in ``data/``, a folder in the upstream layout, or
the published files (``upstream:NAME``, downloaded and verified by :mod:`pytest_kedit.dataset.upstream`).

A folder holds one file per split (``coverage_edit.json``, ``reverse_edit.json``,
``composite_edit.json``, ``easy.json``, ``hard.json``: :data:`pytest_kedit.benchmark.registry.SPLITS`) and
the paraphrase file of each benchmark (``conflict_prompts.json``, ``round_prompts.json``).
Files and records are checked by :mod:`pytest_kedit.dataset.validation`, whose first error stands
for them: a file's (a split file's, or its paraphrase file's) becomes the one error of its split,
a record's becomes that case's error; everything else still runs. With ``--kedit-carry=k`` a
suite also holds the edits the run carries (:mod:`pytest_kedit.benchmark.carry`), read from the
folder's ``sequential.json`` and, for the subjects they must avoid, every ConflictEdit and RoundEdit file.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from pytest_kedit.benchmark.carry import carriable
from pytest_kedit.benchmark.cases import Case, Edit, StreamCase, case_id
from pytest_kedit.benchmark.registry import PAPER_BENCHMARKS, SPLITS, check_split, splits_of
from pytest_kedit.dataset import upstream
from pytest_kedit.dataset.sampling import stratified_sample, stratum
from pytest_kedit.dataset.shards import Shard, deal
from pytest_kedit.dataset.validation import (
    first_error,
    paraphrase_file_bytes,
    paraphrases,
    read_bytes,
    record_findings,
    split_records,
)
from pytest_kedit.errors import ConfigError, DataError

#: The data file of each split.
SPLIT_FILES = {name: split.data_file for name, split in SPLITS.items()}

#: A parametrized case: the parsed case, or the error that replaced it.
Entry = Case | DataError
#: A paraphrase file's relations (relation id -> paraphrases), or its first error.
Prompts = dict[str, tuple[str, ...]] | DataError
#: Paraphrase file name -> what reading it gave.
PromptCache = dict[str, Prompts]


@dataclass
class Suite:
    source: str
    #: split -> entries in file order (a file-level error is a single DataError entry)
    splits: dict[str, list[Entry]] = field(default_factory=dict)
    #: sha256 over the files read, in a fixed order
    fingerprint: str = ""
    #: file name -> sha256 of its bytes, for each file read (the splits' files and the prompts
    #: files of their benchmarks), so that runs of different splits can compare the files they share
    files: dict[str, str] = field(default_factory=dict)
    #: the edits the run carries (``--kedit-carry``), in order; none without it
    carried: tuple[Edit, ...] = ()

    def entries(self, splits: Sequence[str]) -> list[tuple[str, Entry]]:
        """(test id, entry) pairs for the given splits, in split then file order."""
        return [(entry_id(split, entry), entry) for split in splits for entry in self.splits.get(split, [])]


def entry_id(split: str, entry: Entry) -> str:
    """The test id of an entry: its case id, or for an error the id of the record it replaces
    (``reverse-invalid`` for a whole file)."""
    if isinstance(entry, DataError):
        return f"{split}-invalid" if entry.record is None else case_id(split, entry.record)
    return entry.case_id


def builtin_folder() -> Path:
    return Path(str(resources.files("pytest_kedit.builtin_data")))


def resolve_source(data: str | None, option: str = "--kedit-data") -> Path:
    """The folder named by ``data`` (None: the built-in suites; ``upstream:NAME``: the cache folder
    of the published files, downloaded on first use); ConfigError naming ``option`` when ``data``
    is not a folder holding a split file."""
    if not data:
        return builtin_folder()
    if upstream.is_upstream(data):
        return upstream.fetch(data)
    folder = Path(data).expanduser()
    if not folder.is_dir():
        raise ConfigError(f"{option}: {data} is not a folder (expected the upstream layout: {', '.join(SPLIT_FILES.values())})")
    if not any((folder / name).is_file() for name in SPLIT_FILES.values()):
        raise ConfigError(f"{option}: {data} holds none of {', '.join(SPLIT_FILES.values())}")
    return folder


def load_suite(
    data: str | None, splits: Sequence[str], limit: int | None = None, sample: int | None = None, seed: int = 0,
    shard: Shard | None = None, carry: int = 0,
) -> Suite:
    """Read and validate the requested splits. Splits whose file is absent are left out, unless the
    user asked for them by name (then they are an error).

    ``limit`` keeps the first records of each file; ``sample`` then keeps a stratified sample of
    that many parsed cases per split (:func:`pytest_kedit.dataset.sampling.stratified_sample` with
    ``seed``), in file order, with their ids unchanged. Records that failed to parse are kept
    and do not count toward ``sample``. ``shard`` then keeps that shard of each split's entries
    (:func:`pytest_kedit.dataset.shards.deal`, errors included). ``carry`` > 0: the suite's
    :attr:`~Suite.carried` edits (:func:`_carried`; its files enter the fingerprint)."""
    folder = resolve_source(data)
    for split in splits:
        check_split(split, "--kedit-split")
    digest = hashlib.sha256()
    suite = Suite(source=upstream.label(data) if data and upstream.is_upstream(data) else str(folder))
    prompt_cache: PromptCache = {}
    for split in splits:
        if not (folder / SPLIT_FILES[split]).is_file():
            continue
        prompts = _split_prompts(folder, split, digest, suite.files, prompt_cache)
        if isinstance(prompts, DataError):
            suite.splits[split] = [prompts]
            continue
        entries = _read_split(folder / SPLIT_FILES[split], split, prompts, limit, digest, suite.files)
        entries = entries if sample is None else _sampled(entries, sample, seed)
        suite.splits[split] = entries if shard is None else _sharded(split, entries, shard)
    if carry:
        suite.carried = _carried(folder, suite.source, carry, digest, suite.files, prompt_cache)
    suite.fingerprint = digest.hexdigest()
    return suite


def _split_prompts(folder: Path, split: str, digest: Any, files: dict[str, str], prompt_cache: PromptCache) -> Prompts:
    """The paraphrases of ``split``'s benchmark in ``folder``, or the first error of their file;
    each file read once (``prompt_cache``: file name -> what it gave)."""
    prompts_name = SPLITS[split].benchmark.prompts_file
    if prompts_name not in prompt_cache:
        prompt_cache[prompts_name] = _read_prompts(folder / prompts_name, digest, files)
    return prompt_cache[prompts_name]


def _entries(folder: Path, split: str, limit: int | None, digest: Any, files: dict[str, str],
             prompt_cache: PromptCache) -> list[Entry]:
    """The first ``limit`` entries of ``split``'s file in ``folder``, or the one error of its paraphrase file."""
    prompts = _split_prompts(folder, split, digest, files, prompt_cache)
    if isinstance(prompts, DataError):
        return [prompts]
    return _read_split(folder / SPLIT_FILES[split], split, prompts, limit, digest, files)


def _carried(folder: Path, source: str, carry: int, digest: Any, files: dict[str, str],
             prompt_cache: PromptCache) -> tuple[Edit, ...]:
    """The first ``carry`` edits of the first stream of ``folder``'s ``sequential.json`` that no
    ConflictEdit or RoundEdit case of the folder's files touches
    (:func:`~pytest_kedit.benchmark.carry.carriable`); ConfigError, one line naming ``source`` or
    the file, when the folder has no stream, its first stream does not parse, or it has fewer."""
    stream_file = SPLIT_FILES["sequential"]
    if not (folder / stream_file).is_file():
        raise ConfigError(f"--kedit-carry={carry}: {source} has no {stream_file}, the stream whose first edits are carried")
    stream = _entries(folder, "sequential", 1, digest, files, prompt_cache)[0]
    if not isinstance(stream, StreamCase):
        raise ConfigError(f"--kedit-carry={carry}: {stream}")
    cases = [entry for benchmark in PAPER_BENCHMARKS for split in splits_of(benchmark)
             if (folder / SPLIT_FILES[split]).is_file()
             for entry in _entries(folder, split, None, digest, files, prompt_cache) if isinstance(entry, Case)]
    edits = carriable(stream, cases)
    if len(edits) < carry:
        raise ConfigError(f"--kedit-carry={carry}: the first stream of {source}/{stream_file} has {len(edits)} edits "
                          f"(of {len(stream.edits)}) whose subject no ConflictEdit or RoundEdit case edits or probes; "
                          f"carry at most {len(edits)}")
    return edits[:carry]


def _sampled(entries: list[Entry], n: int, seed: int) -> list[Entry]:
    """The errors and a stratified sample of ``n`` of the cases among ``entries``, in their order."""
    cases = [(position, entry) for position, entry in enumerate(entries) if not isinstance(entry, DataError)]
    chosen = {cases[i][0] for i in stratified_sample([stratum(case) for _, case in cases], n, seed)}
    return [entry for position, entry in enumerate(entries) if position in chosen or isinstance(entry, DataError)]


def _sharded(split: str, entries: list[Entry], shard: Shard) -> list[Entry]:
    """The entries of ``shard``, in their order: dealt by (relation, test id); errors have no relation."""
    keys = [(entry.relation_group if isinstance(entry, Case) else "", entry_id(split, entry)) for entry in entries]
    return [entries[position] for position in deal(keys, shard)]


def _fingerprint(path: Path, raw: bytes, digest: Any, files: dict[str, str]) -> bytes:
    """``raw``, the bytes read from ``path``, once added to the suite's fingerprint and its files'
    (a file read again, for the carried edits, is not added twice)."""
    if path.name not in files:
        digest.update(path.name.encode() + b"\0" + raw)
        files[path.name] = hashlib.sha256(raw).hexdigest()
    return raw


def _read_prompts(path: Path, digest: Any, files: dict[str, str]) -> Prompts:
    """The relations of a paraphrase file, or its first error."""
    try:
        relations, findings = paraphrases(path, _fingerprint(path, paraphrase_file_bytes(path), digest, files))
    except DataError as exc:
        return exc
    error = first_error(findings)
    return relations if error is None else error


def _read_split(
    path: Path, split: str, prompts: dict[str, tuple[str, ...]], limit: int | None, digest: Any, files: dict[str, str],
) -> list[Entry]:
    """The entries of a split file: its first ``limit`` records' cases or first errors, or its own error."""
    prompts_name = SPLITS[split].benchmark.prompts_file
    try:
        records = split_records(path, _fingerprint(path, read_bytes(path), digest, files))
    except DataError as exc:
        return [exc]
    entries: list[Entry] = []
    for index, record in enumerate(records if limit is None else records[:limit]):
        parsed, findings = record_findings(str(path), index, split, record, prompts, prompts_name)
        error = first_error(findings)
        entries.append(parsed if error is None else error)
    return entries
